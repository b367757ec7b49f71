"""Per-dataset hyper-parameter selection of the collaborative families, inside the nightly retrain.

Settings chosen for one dataset do not carry to another: on Gowalla the graph filter wins with a
high ideal rank, on a sparse user-business set a strongly regularised ALS with many factors does.
So each night, per surface, every family gets a budgeted Optuna TPE search on a validation split
of the training interactions (a random share of each user's items held out, scored all-ranking by
NDCG@k on a sample of users), warm-started from the previous night's winner so a night costs
little when the data drifts slowly. A family whose best validation NDCG does not beat item
popularity on the same split is marked unsupported, with the figures as evidence.

Each family serves one candidate source: ALS the ``als`` source, the graph filters (BSPM, ChebyCF)
the ``graph`` source, which the better supported one of them serves. A source none of whose
families is supported is dropped (:meth:`Selection.sources`, :meth:`Selection.dropped`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackError

from hybridrec.models.collaborative import ALSModel, BSPMModel, ChebyCFModel, CollaborativeModel
from hybridrec.models.evaluation import holdout_split, recall_ndcg_at_k
from hybridrec.models.ranker import Ranker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """A collaborative family: the candidate source it can serve, how to draw its hyper-parameters and
    how to build a model from them (the same build for validation and for the published model)."""

    name: str
    source: str
    suggest: Callable[[optuna.Trial], dict[str, Any]]
    build: Callable[[dict[str, Any]], CollaborativeModel]


@dataclass
class FamilyChoice:
    family: str
    source: str
    params: dict[str, Any]
    validation_ndcg: float
    supported: bool
    trials: list[dict[str, Any]] = field(default_factory=list)  # params, ndcg, seconds; in the order run


@dataclass
class RankerChoice:
    """The ranker's LightGBM settings kept (``n_estimators``: the trees early stopping kept) and the trials."""

    params: dict[str, Any]
    validation_ndcg: float
    trials: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Selection:
    k: int
    popularity_ndcg: float
    validation_users: int
    seconds: float
    families: dict[str, FamilyChoice]
    ranker: RankerChoice | None = None  # chosen later, on the candidates the chosen sources propose

    def best(self) -> str:
        """The family with the highest validation NDCG among the supported ones (or overall)."""
        pool = [c for c in self.families.values() if c.supported] or list(self.families.values())
        return max(pool, key=lambda c: c.validation_ndcg).family

    def sources(self) -> dict[str, FamilyChoice]:
        """Each candidate source's serving family: its best supported one; a source without any is absent."""
        served: dict[str, FamilyChoice] = {}
        for choice in self.families.values():
            if choice.supported and (choice.source not in served
                                     or choice.validation_ndcg > served[choice.source].validation_ndcg):
                served[choice.source] = choice
        return served

    def dropped(self) -> dict[str, str]:
        """Each dropped source with the evidence: its families' best validation NDCG against popularity's."""
        served = self.sources()
        out = {}
        for source in dict.fromkeys(c.source for c in self.families.values()):
            if source not in served:
                best = max((c for c in self.families.values() if c.source == source), key=lambda c: c.validation_ndcg)
                out[source] = (f"best family {best.family}: validation ndcg@{self.k} {best.validation_ndcg:.5f}, "
                               f"not above popularity's {self.popularity_ndcg:.5f}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "best": self.best(),
                "sources": {source: c.family for source, c in self.sources().items()}, "dropped": self.dropped()}


def _validation(user_items: sp.csr_matrix, share: float, max_users: int, seed: int):
    """(fit, validation) with validation rows only for a seeded sample of at most ``max_users`` users."""
    fit, held = holdout_split(user_items, share, seed)
    users = np.flatnonzero(np.diff(held.indptr))
    if len(users) > max_users:
        keep = np.zeros(held.shape[0], dtype=bool)
        keep[np.random.default_rng(seed).choice(users, max_users, replace=False)] = True
        held = sp.diags(keep.astype(np.float32)) @ held
        held.eliminate_zeros()
    return fit.tocsr(), held.tocsr()


def select(families: Sequence[Family], user_items: sp.csr_matrix, k: int, trials: int, budget_s: float,
           validation_share: float, max_users: int, seed: int,
           warm_start: Mapping[str, dict[str, Any]] | None = None) -> Selection:
    """Search each family within ``trials`` and its share of ``budget_s``; ``warm_start`` (family → params,
    e.g. last night's winners) is tried first."""
    started = time.perf_counter()
    fit, held = _validation(user_items, validation_share, max_users, seed)
    popularity = np.asarray(fit.sum(axis=0)).ravel().astype(np.float32)
    baseline = recall_ndcg_at_k(lambda users: np.broadcast_to(popularity, (len(users), len(popularity))).copy(),
                                fit, held, k, show_progress=False)[f"ndcg@{k}"]
    per_family_s = budget_s / max(len(families), 1)
    choices = {}
    for family in families:
        choices[family.name] = _search(family, fit, held, k, trials, per_family_s, seed,
                                       (warm_start or {}).get(family.name), baseline)
    selection = Selection(k, round(baseline, 5), int(np.count_nonzero(np.diff(held.indptr))),
                          round(time.perf_counter() - started, 1), choices)
    log.info("model selection: popularity ndcg@%d %.4f; %s; best %s", k, baseline,
             ", ".join(f"{c.family} {c.validation_ndcg:.4f} ({len(c.trials)} trials"
                       f"{'' if c.supported else ', unsupported: not above popularity'})" for c in choices.values()),
             selection.best())
    for source, evidence in selection.dropped().items():
        log.warning("model selection: the %s candidate source is dropped: %s", source, evidence)
    return selection


class Rejected(Exception):
    """Parameters the data cannot carry (e.g. a rank above the matrix's): a failed trial, not a failed night."""


def search(suggest: Callable[[optuna.Trial], dict[str, Any]], evaluate: Callable[[dict[str, Any]], dict[str, Any]],
           trials: int, budget_s: float, seed: int, first: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """An Optuna TPE search that maximises ``evaluate(params)["ndcg"]`` within ``trials`` and ``budget_s``;
    ``first`` (e.g. last night's winner) is tried before TPE draws. Returns each completed trial as
    ``{"params", "seconds", **evaluate(params)}``, in the order run; a :class:`Rejected` trial is skipped."""
    runs: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial)
        began = time.perf_counter()
        try:
            result = evaluate(params)
        except Rejected as err:
            log.info("trial %s rejected: %s", params, err)
            raise optuna.TrialPruned() from err
        runs.append({"params": params, **result, "seconds": round(time.perf_counter() - began, 2)})
        return result["ndcg"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for params in first:
        study.enqueue_trial(params, skip_if_exists=True)
    study.optimize(objective, n_trials=trials, timeout=budget_s)
    return runs


def _search(family: Family, fit: sp.csr_matrix, held: sp.csr_matrix, k: int, trials: int, budget_s: float,
            seed: int, warm: dict[str, Any] | None, baseline: float) -> FamilyChoice:
    def evaluate(params: dict[str, Any]) -> dict[str, Any]:
        try:
            model = family.build(params).fit(fit)
        except (ValueError, ArpackError) as err:
            raise Rejected(f"{family.name}: {err}") from err
        return {"ndcg": round(recall_ndcg_at_k(model, fit, held, k, show_progress=False)[f"ndcg@{k}"], 5)}

    runs = search(family.suggest, evaluate, trials, budget_s, seed, [warm] if warm else [])
    if not runs:
        raise RuntimeError(f"no {family.name} trial could be fitted within {budget_s:.0f} s")
    best = max(runs, key=lambda r: r["ndcg"])
    return FamilyChoice(family.name, family.source, best["params"], best["ndcg"], best["ndcg"] > baseline, runs)


def ranker_space(trial: optuna.Trial) -> dict[str, Any]:
    """The ranker's searched settings; the number of trees is early stopping's on the same validation rows."""
    return {"num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True)}


def select_ranker(train: Callable[[dict[str, Any]], Ranker], trials: int, budget_s: float, seed: int,
                  first: dict[str, Any]) -> tuple[Ranker, RankerChoice]:
    """The ranker of the best validation NDCG that ``train(params)`` (early-stopped on its validation rows)
    gives within ``trials`` and ``budget_s``, ``first`` (last night's or the configured settings) tried first."""
    best: dict[str, Any] = {}

    def evaluate(params: dict[str, Any]) -> dict[str, Any]:
        ranker = train(params)
        ndcg, trees = ranker.validation()
        if not best or ndcg > best["ndcg"]:
            best.update(ndcg=ndcg, ranker=ranker)
        return {"ndcg": round(ndcg, 5), "trees": trees}

    runs = search(ranker_space, evaluate, trials, budget_s, seed, [first])
    if not runs:
        raise RuntimeError(f"no ranker trial finished within {budget_s:.0f} s")
    chosen = max(runs, key=lambda r: r["ndcg"])
    log.info("ranker selection: validation ndcg %.4f with %s and %d trees (%d trials; the first, %s: %.4f)",
             chosen["ndcg"], chosen["params"], chosen["trees"], len(runs), first, runs[0]["ndcg"])
    return best["ranker"], RankerChoice({**chosen["params"], "n_estimators": chosen["trees"]}, chosen["ndcg"], runs)


def als_family(iterations: int, seed: int) -> Family:
    """ALS over a range wide enough for both dense and sparse data (many factors with strong
    regularisation and high alpha won on a sparse user-business set)."""
    def suggest(trial: optuna.Trial) -> dict[str, Any]:
        return {"factors": trial.suggest_int("factors", 16, 256, log=True),
                "regularization": trial.suggest_float("regularization", 1e-3, 100.0, log=True),
                "alpha": trial.suggest_float("alpha", 1.0, 80.0, log=True)}

    return Family("als", "als", suggest, lambda p: ALSModel(**p, iterations=iterations, random_state=seed,
                                                            show_progress=False))


def bspm_family(max_rank: int, seed: int, sharpen_steps: int = 1) -> Family:
    """The BSPM graph filter; ``sharpen_time`` 0 is GF-CF, so both are searched at once."""
    def suggest(trial: optuna.Trial) -> dict[str, Any]:
        return {"ideal_rank": trial.suggest_int("ideal_rank", 8, max(8, max_rank), log=True),
                "ideal_weight": trial.suggest_float("ideal_weight", 0.0, 0.6),
                "sharpen_time": trial.suggest_float("sharpen_time", 0.0, 3.0)}

    return Family("bspm", "graph", suggest,
                  lambda p: BSPMModel(**p, sharpen_steps=sharpen_steps, random_state=seed))


def chebycf_family(max_rank: int, max_order: int, seed: int) -> Family:
    """The ChebyCF graph filter, on sparse matrices only: ``max_rank`` bounds its dense ideal low-pass factor
    (``n_items x ideal_rank``), ``max_order`` its applications of the item graph per scored batch (time)."""
    def suggest(trial: optuna.Trial) -> dict[str, Any]:
        return {"order": trial.suggest_int("order", 2, max(2, max_order)),
                "flatness": trial.suggest_float("flatness", 0.3, 3.0, log=True),
                "ideal_rank": trial.suggest_int("ideal_rank", 8, max(8, max_rank), log=True),
                "ideal_weight": trial.suggest_float("ideal_weight", 0.0, 0.6),
                "degree_power": trial.suggest_float("degree_power", 0.0, 0.6)}

    return Family("chebycf", "graph", suggest, lambda p: ChebyCFModel(**p, random_state=seed))
