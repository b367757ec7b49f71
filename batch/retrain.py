"""`hybridrec retrain`: the nightly pipeline as named, re-runnable steps.

snapshot inputs → interactions (Spark) → per surface: CF models, candidates, features, LightGBM
ranker (trained on one half of the label-day users), evaluation (on the other half) → plots →
refit of profiles and CF models on every event up to now (the ranker is kept as evaluated) →
publish to new OpenSearch indices + one atomic alias swap → registry. Any failure before the swap
leaves the served indices untouched and records the run as failed.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from hybridrec.batch.candidates import CovisitationSource, SurfaceData, surface_sources, top_candidates
from hybridrec.batch.interactions import TimeSplit, interactions_sql, labels_sql, last_event_day, write_interactions
from hybridrec.batch.publish import publish_run
from hybridrec.registry import Registry, latest_model_files, ranker_path, run_dir as registry_run_dir
from hybridrec.config import RetrainSettings, Settings
from hybridrec.contract import (
    CANDIDATES, CLIPS, EVALUATION_RUNS, EVENTS, INTERACTIONS, ITEM_EMBEDDINGS, ITEM_KEYWORDS, PLACES, QUERY_TAGS,
    SEARCH_QUERIES, TRUTH_ITEM_TAGS, TRUTH_QUERY_LABELS, USERS,
)
from hybridrec.features.profiles import item_profiles, user_profiles
from hybridrec.features.ranking import SOURCES, feature_frame
from hybridrec.features.segments import SEGMENTS, user_segment
from hybridrec.lake import Lake
from hybridrec.models.collaborative import ALSModel, CollaborativeModel
from hybridrec.models.fusion import rrf_ranks
from hybridrec.models.ranker import Ranker
from hybridrec.models.ranking_metrics import list_metrics
from hybridrec.models.selection import (
    Family, Selection, als_family, bspm_family, chebycf_family, select, select_ranker,
)
from hybridrec.models.student import TopicClassifier
from hybridrec.pipeline import Step
from hybridrec.runinfo import RunContext, new_run

log = logging.getLogger(__name__)

SURFACES = ("place", "clip")


@dataclass
class SurfaceInputs:
    surface: str
    items: pd.DataFrame        # item_id, topic_path, created_at, lat, lon + metadata for documents
    interactions: pd.DataFrame  # this surface's rows of derived.interactions
    labels: pd.DataFrame       # user_id, item_id, gain on the label day (unseen items only)


def _read(lake: Lake, spec, columns: tuple[str, ...] = ("*",), row_filter: str | None = None) -> pd.DataFrame:
    scan = lake.scan(spec, row_filter=row_filter, columns=columns) if row_filter else lake.scan(spec, columns=columns)
    return scan.to_pandas()


def _optional(lake: Lake, spec, columns: tuple[str, ...]) -> pd.DataFrame | None:
    """A content table of the extraction stage, or None when it has not run yet."""
    if not lake.exists(spec) or lake.count(spec) == 0:
        return None
    return _read(lake, spec, columns)


def load_items(lake: Lake, surface: str, topic_classifier: TopicClassifier | None = None) -> pd.DataFrame:
    """Catalogue rows of a surface; clips gain the topic classifier's path of their text when one is given."""
    if surface == "place":
        items = _read(lake, PLACES).rename(columns={"category_path": "topic_path"})
        items["title"] = items["name"]
        items["text"] = items["name"] + " " + items["address"].fillna("")
    else:
        items = _read(lake, CLIPS)
        items["text"] = items["title"] + " " + items["description"].fillna("")
        items["lat"], items["lon"] = np.nan, np.nan
        if topic_classifier is not None:
            items["predicted_topic_path"] = topic_classifier.predict_clips(items["title"], items["description"])
    return items


def optional_topic_classifier(settings: Settings) -> TopicClassifier | None:
    """The distill run's topic classifier, or None before the first distill run (clips then carry only
    their catalogue topic)."""
    from hybridrec.registry import load_topic_classifier

    try:
        return load_topic_classifier(settings)
    except LookupError as missing:
        log.info("%s; clips are published without predicted topics", missing)
        return None


@dataclass
class ContentSignals:
    """What the extraction stage produced, each part optional: the pipeline runs without any of it."""

    item_vectors: dict[str, np.ndarray]
    user_vectors: dict[str, np.ndarray]
    item_tags: dict[str, list[str]]
    query_tags: dict[str, dict[str, float]]

    @classmethod
    def load(cls, lake: Lake, before: datetime, interactions: pd.DataFrame,
             source: str = "extracted") -> "ContentSignals":
        """Signals as of ``before``, so nothing from the label day leaks into training or evaluation.

        User vectors are rebuilt here from the item vectors and the (pre-label-day, decayed)
        interactions rather than read from ``derived.user_embeddings``, which covers every event.
        ``source`` (``retrain.content_signals``): ``extracted`` reads what extraction wrote; ``truth_tags``
        replaces its item and query tags by the synthetic world's truth (the ceiling extraction could
        reach); ``none`` uses no content at all (what content adds).
        """
        if source == "none":
            log.info("content signals: none (retrain.content_signals)")
            return cls(item_vectors={}, user_vectors={}, item_tags={}, query_tags={})
        items = _optional(lake, ITEM_EMBEDDINGS, ("item_id", "embedding"))
        if source == "truth_tags":
            keywords = _read(lake, TRUTH_ITEM_TAGS, ("item_id", "tag"))
            labels = _read(lake, TRUTH_QUERY_LABELS, ("query_id", "intent", "tags"))
            users = _read(lake, SEARCH_QUERIES, ("query_id", "user_id"))
            queries = labels.merge(users, on="query_id")
        else:
            keywords = _optional(lake, ITEM_KEYWORDS, ("item_id", "tag"))
            queries = _optional(lake, QUERY_TAGS, ("query_id", "user_id", "intent", "tags"))
        query_tags: dict[str, dict[str, float]] = {}
        if queries is not None:
            asked = _read(lake, SEARCH_QUERIES, ("query_id", "ts"))
            early = set(asked.loc[asked["ts"] < before, "query_id"])
            for row in queries[(queries["intent"] == "interest") & queries["query_id"].isin(early)].itertuples(index=False):
                for tag in row.tags if row.tags is not None else ():
                    bucket = query_tags.setdefault(row.user_id, {})
                    bucket[tag] = bucket.get(tag, 0.0) + 1.0
        item_tags: dict[str, list[str]] = {}
        if keywords is not None:
            for item_id, tags in keywords.dropna().groupby("item_id")["tag"]:
                item_tags[item_id] = sorted(set(tags))
        item_vectors = {} if items is None else dict(zip(items["item_id"], map(np.asarray, items["embedding"])))
        signals = cls(item_vectors=item_vectors, user_vectors=_user_vectors(interactions, item_vectors),
                      item_tags=item_tags, query_tags=query_tags)
        log.info("content signals (%s): %d item vectors, %d user vectors, %d tagged items, %d users with query tags",
                 source, len(signals.item_vectors), len(signals.user_vectors), len(item_tags), len(query_tags))
        return signals


def _user_vectors(interactions: pd.DataFrame, item_vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Confidence-weighted mean of engaged items' vectors, L2-normalised (same space as the items)."""
    if not item_vectors:
        return {}
    positive = interactions[(interactions["confidence"] > 0) & interactions["item_id"].isin(item_vectors)]
    vectors: dict[str, np.ndarray] = {}
    for user_id, rows in positive.groupby("user_id"):
        stacked = np.stack([item_vectors[i] for i in rows["item_id"]])
        mean = rows["confidence"].to_numpy() @ stacked
        norm = np.linalg.norm(mean)
        if norm > 0:
            vectors[user_id] = (mean / norm).astype(np.float32)
    return vectors


def _matrix(interactions: pd.DataFrame, user_index: dict[str, int], item_index: dict[str, int],
            values: np.ndarray) -> sp.csr_matrix:
    rows = interactions["user_id"].map(user_index).to_numpy()
    cols = interactions["item_id"].map(item_index).to_numpy()
    return sp.csr_matrix((values, (rows, cols)), shape=(len(user_index), len(item_index)), dtype=np.float32)


def _stack(vectors: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray | None:
    if not vectors:
        return None
    dim = len(next(iter(vectors.values())))
    out = np.zeros((len(ids), dim), dtype=np.float32)
    for i, key in enumerate(ids):
        if key in vectors:
            out[i] = vectors[key]
    return out


def surface_data(surface: str, inputs: SurfaceInputs, users: pd.DataFrame, user_profiles_: dict,
                 item_profiles_: dict, content: ContentSignals) -> SurfaceData:
    user_ids = users["user_id"].to_numpy()
    item_ids = inputs.items["item_id"].to_numpy()
    user_index = {u: i for i, u in enumerate(user_ids)}
    item_index = {it: i for i, it in enumerate(item_ids)}
    rows = inputs.interactions[inputs.interactions["item_id"].isin(item_index)]
    positive = rows[rows["confidence"] > 0]
    return SurfaceData(
        surface=surface, user_ids=user_ids, item_ids=item_ids,
        user_items=_matrix(positive, user_index, item_index, positive["confidence"].to_numpy(np.float32)),
        seen=_matrix(rows, user_index, item_index, np.ones(len(rows), dtype=np.float32)),
        item_popularity=np.array([item_profiles_[i].popularity for i in item_ids], dtype=np.float64),
        item_topic=inputs.items["topic_path"].to_numpy(),
        user_topic_affinity=[dict(user_profiles_[u].topic_affinity) for u in user_ids],
        item_lat=inputs.items["lat"].to_numpy(float) if surface == "place" else None,
        item_lon=inputs.items["lon"].to_numpy(float) if surface == "place" else None,
        user_lat=users["home_lat"].to_numpy(float), user_lon=users["home_lon"].to_numpy(float),
        user_vectors=_stack(content.user_vectors, user_ids), item_vectors=_stack(content.item_vectors, item_ids),
        item_trending=np.array([item_profiles_[i].trending for i in item_ids], dtype=np.float64),
        item_tags=[tuple(item_profiles_[i].tags) for i in item_ids],
        user_interest_tags=[dict(user_profiles_[u].interest_tags) for u in user_ids])


def user_segments(users, users_p: dict, heavy_items: int) -> dict[str, str]:
    """Each user's segment (:mod:`hybridrec.features.segments`, the names feed responses carry) from the
    profile as of the cut-off: engaged items, and interest-query tags standing for searches."""
    return {u: user_segment(users_p[u].items, bool(users_p[u].interest_tags), heavy_items) for u in users}


def in_training_half(user_id: str) -> bool:
    """Deterministic user split: the ranker learns on one half and is scored on the other."""
    return zlib.crc32(f"ranker-split:{user_id}".encode()) % 2 == 0


@dataclass
class SurfaceResult:
    surface: str
    data: SurfaceData
    als: ALSModel | None              # None: the source is dropped on this surface (its family unsupported)
    graph: CollaborativeModel | None  # the winning graph filter (BSPM or ChebyCF), None: dropped
    covisit: CovisitationSource
    ranker: Ranker
    ranked: pd.DataFrame      # evaluation candidates with ranker scores
    evaluation: pd.DataFrame  # rows of ops.evaluation_runs
    selection: Selection | None = None  # how the CF parameters were chosen on this surface's data


def cf_families(cfg: RetrainSettings, user_items: sp.csr_matrix) -> dict[str, Family]:
    """The collaborative families by name, their ranks capped below the matrix's smaller side: searched by
    the selection and built from its winners (validation and the published models share one build)."""
    rank = min(cfg.selection.max_graph_rank, min(user_items.shape) - 1)
    families = [als_family(cfg.als.iterations, cfg.seed), bspm_family(rank, cfg.seed, cfg.graph_filter.sharpen_steps),
                chebycf_family(rank, cfg.selection.max_graph_order, cfg.seed)]
    return {f.name: f for f in families}


@dataclass(frozen=True)
class CFPlan:
    """Which family, with which parameters, serves each collaborative candidate source of a surface; a
    source not in ``sources`` is dropped: not computed, not published, NaN features (its family unsupported)."""

    sources: dict[str, tuple[str, dict]]  # source (als, graph) -> (family name, parameters)
    selection: Selection | None           # how they were chosen; None: the configured parameters

    @classmethod
    def of(cls, selection: Selection) -> "CFPlan":
        """Each source served by its winning family; the sources without a supported family dropped."""
        return cls({source: (c.family, c.params) for source, c in selection.sources().items()}, selection)

    def build(self, source: str, families: dict[str, Family]) -> CollaborativeModel | None:
        """The source's model, unfitted, or None when the source is dropped."""
        if source not in self.sources:
            return None
        family, params = self.sources[source]
        return families[family].build(params)


def cf_plan(cfg: RetrainSettings, user_items: sp.csr_matrix, warm_start: dict | None) -> CFPlan:
    """The CF sources' families and parameters for this surface: chosen on its own data (``retrain.selection``,
    warm-started from ``warm_start``: family -> params), else the configured ALS and BSPM."""
    if not cfg.selection.enabled:
        graph = cfg.graph_filter.model_dump(exclude={"sharpen_steps"})
        graph["ideal_rank"] = min(graph["ideal_rank"], min(user_items.shape) - 1)
        return CFPlan({"als": ("als", cfg.als.model_dump(exclude={"iterations"})), "graph": ("bspm", graph)}, None)
    sel = cfg.selection
    selection = select(list(cf_families(cfg, user_items).values()), user_items, cfg.eval_k, sel.trials, sel.budget_s,
                       sel.validation_share, sel.max_users, cfg.seed, warm_start)
    return CFPlan.of(selection)


def last_selection(lake: Lake) -> dict[str, dict[str, dict]]:
    """surface -> {"families": family -> params, "ranker": params} the newest succeeded retrain chose (empty
    before the first)."""
    try:
        _, files = latest_model_files(lake, "retrain")
    except LookupError:
        return {}
    path = files.get("selection")
    if not path or not Path(path).exists():
        return {}
    chosen = json.loads(Path(path).read_text())
    return {surface: {"families": {f: c["params"] for f, c in s["families"].items()},
                      "ranker": (s.get("ranker") or {}).get("params")} for surface, s in chosen.items()}


@dataclass
class SurfaceModels:
    """What a surface's history gives before any ranking: profiles, matrices and the CF models."""

    data: SurfaceData
    als: ALSModel | None
    graph: CollaborativeModel | None
    covisit: CovisitationSource
    users_p: dict
    items_p: dict
    selection: Selection | None


CFPlanner = Callable[[sp.csr_matrix], CFPlan]  # user_items -> the CF sources' families and parameters


def fit_surface_models(settings: Settings, inputs: SurfaceInputs, users: pd.DataFrame, content: ContentSignals,
                       as_of: datetime, planner: CFPlanner) -> SurfaceModels:
    """Profiles, the user x item matrices (popularity, seen sets) and the CF models from ``inputs.interactions``;
    ``planner(user_items)`` gives the CF sources' families and parameters (:func:`cf_plan`, or the plan already
    chosen); a dropped source has no model."""
    cfg = settings.retrain
    items_p = item_profiles(inputs.items, inputs.interactions, as_of, content.item_tags, content.item_vectors,
                            trending_days=cfg.trending_days)
    users_p = user_profiles(users, inputs.interactions, inputs.items, content.query_tags, content.user_vectors)
    data = surface_data(inputs.surface, inputs, users, users_p, items_p, content)
    plan = planner(data.user_items)
    families = cf_families(cfg, data.user_items)
    als, graph = (plan.build(source, families) for source in ("als", "graph"))
    for model in (als, graph):
        if model is not None:
            model.fit(data.user_items)
    pool = settings.candidates
    covisit = CovisitationSource(data, pool.covisit_neighbours, pool.covisit_seed_items)
    return SurfaceModels(data, als, graph, covisit, users_p, items_p, plan.selection)


def train_surface(settings: Settings, inputs: SurfaceInputs, users: pd.DataFrame, content: ContentSignals,
                  as_of: datetime, run: RunContext, warm_start: dict | None = None) -> tuple[SurfaceResult, dict, dict]:
    cfg = settings.retrain
    surface = inputs.surface
    fitted = fit_surface_models(settings, inputs, users, content, as_of,
                                lambda user_items: cf_plan(cfg, user_items, (warm_start or {}).get("families")))
    data, als, graph, covisit, selection = fitted.data, fitted.als, fitted.graph, fitted.covisit, fitted.selection
    users_p, items_p = fitted.users_p, fitted.items_p
    pool = settings.candidates
    sources = surface_sources(data, als, graph, covisit, pool)

    label_users = np.array(sorted(set(inputs.labels["user_id"]) & set(data.user_index)))
    frames = []
    for start in tqdm(range(0, len(label_users), cfg.batch_users), desc=f"{surface} candidates", unit="batch",
                      leave=False):
        batch = np.array([data.user_index[u] for u in label_users[start:start + cfg.batch_users]])
        candidates = top_candidates(sources, data, batch, pool.per_source, pool.pool_size)
        features = feature_frame(candidates, users_p, items_p, now=as_of).astype(np.float32)
        frames.append(pd.concat([candidates[["user_id", "item_id"]], features], axis=1))
    table = pd.concat(frames, ignore_index=True).merge(inputs.labels, on=["user_id", "item_id"], how="left")
    table["gain"] = table["gain"].fillna(0).astype(int)
    table = table.sort_values(["user_id"], kind="stable").reset_index(drop=True)

    ranker = _train_ranker(table[table["user_id"].map(in_training_half)], cfg, selection,
                           (warm_start or {}).get("ranker"))
    held_out = table[~table["user_id"].map(in_training_half)].copy()
    held_out["score"] = ranker.score(held_out)
    held_out["rank"] = held_out.groupby("user_id")["score"].rank(ascending=False, method="first").astype(int)
    evaluation = evaluate(held_out, inputs.labels, data, users_p, cfg.eval_k, run, surface, cfg.heavy_user_items)
    return (SurfaceResult(surface, data, als, graph, covisit, ranker, held_out, evaluation, selection),
            users_p, items_p)


def _groups(frame: pd.DataFrame) -> np.ndarray:
    return frame.groupby("user_id", sort=False).size().to_numpy()


def _train_ranker(train: pd.DataFrame, cfg: RetrainSettings, selection: Selection | None,
                  warm_start: dict | None) -> Ranker:
    """LightGBM lambdarank; users without any engaged candidate teach nothing and are left out. With a
    ``selection`` its settings are searched on the validation users (``retrain.selection.ranker_*``, from
    ``warm_start`` or the configured ones) and recorded in it; else the configured ones."""
    ranker_cfg, seed = cfg.ranker, cfg.seed
    useful = train.groupby("user_id")["gain"].transform("max") > 0
    train = train[useful]
    users = train["user_id"].unique()
    if len(users) > ranker_cfg.max_train_users:
        keep = set(np.random.default_rng(seed).choice(users, ranker_cfg.max_train_users, replace=False))
        train = train[train["user_id"].isin(keep)]
        users = train["user_id"].unique()
    if len(users) < 4:
        raise ValueError(f"only {len(users)} label-day users with engaged candidates: too few to train the ranker")
    valid_users = set(users[:: max(1, round(1 / ranker_cfg.validation_share))])
    fit, valid = train[~train["user_id"].isin(valid_users)], train[train["user_id"].isin(valid_users)]

    def trained(params: dict) -> Ranker:
        return Ranker.train(fit, fit["gain"].to_numpy(), _groups(fit), ranker_cfg.model_copy(update=params),
                            valid=(valid, valid["gain"].to_numpy(), _groups(valid)), seed=seed)

    if selection is None or not cfg.selection.ranker_trials:
        return trained({})
    configured = ranker_cfg.model_dump(include={"num_leaves", "learning_rate", "min_child_samples"})
    first = {k: v for k, v in (warm_start or configured).items() if k in configured}
    ranker, selection.ranker = select_ranker(trained, cfg.selection.ranker_trials, cfg.selection.ranker_budget_s,
                                             seed, first)
    return ranker


def evaluated_lists(held_out: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Ranked lists (user_id, item_id, rank) over the held-out candidates: the ranker, reciprocal-rank
    fusion of the same candidate union (what merging the sources gives without learning), each source
    alone and popularity."""
    present = [f"{s}_rank" for s in SOURCES if held_out[f"{s}_rank"].notna().any()]
    lists = {"ranker": held_out[["user_id", "item_id", "rank"]],
             "rrf": held_out[["user_id", "item_id"]].assign(rank=rrf_ranks(held_out, present))}
    for column in present:
        source = column.removesuffix("_rank")
        name = "popularity" if source == "popular" else source
        lists[name] = held_out[held_out[column].notna()][["user_id", "item_id", column]].rename(
            columns={column: "rank"})
    return lists


def evaluate(held_out: pd.DataFrame, labels: pd.DataFrame, data: SurfaceData, users_p: dict, k: int,
             run: RunContext, surface: str, heavy_items: int) -> pd.DataFrame:
    """The ranker, RRF, each source alone and popularity, overall and per user segment, on held-out users."""
    users = held_out["user_id"].unique()
    relevant = labels[labels["user_id"].isin(users)]
    popularity = pd.Series(data.item_popularity, index=data.item_ids)
    segments = user_segments(users, users_p, heavy_items)
    rows = []
    now = datetime.now(timezone.utc)
    for model, recommended in evaluated_lists(held_out).items():
        for segment in ("all", *SEGMENTS):
            members = relevant if segment == "all" else relevant[relevant["user_id"].map(segments) == segment]
            metrics = list_metrics(recommended, members, k, popularity, len(data.item_ids))
            n_users = metrics.pop("users")
            rows += [{"run_id": run.run_id, "surface": surface, "model": model, "segment": segment, "metric": name,
                      "value": value, "users": n_users, "recorded_at": now} for name, value in metrics.items()]
    return pd.DataFrame(rows)


def _unseen(labels: pd.DataFrame, interactions: pd.DataFrame) -> pd.DataFrame:
    """Label-day engagement with items the user had not seen before (re-engagement is not discovery)."""
    seen = interactions[["user_id", "item_id", "surface"]].assign(seen=True)
    labels = labels.merge(seen, on=["user_id", "item_id", "surface"], how="left")
    return labels[labels["seen"].isna()].drop(columns="seen")


class UnknownStep(ValueError):
    """``fail_at`` names no step of the retrain: refused before anything runs (a typo must not publish)."""


def label_window_interactions(settings: Settings, lake: Lake, run: RunContext) -> dict[str, Any]:
    """The interactions step: ``derived.interactions`` before the label window (Spark) and the
    label-window engagement with unseen items."""
    from hybridrec.spark import spark_job

    lake.table(INTERACTIONS)
    with spark_job(settings, "hybridrec-retrain") as spark:
        split = TimeSplit.ending_at(last_event_day(spark), settings.retrain.label_days)
        rows = write_interactions(spark, settings.retrain, settings.signals, split, run)
        labels = spark.sql(labels_sql(split, settings.retrain.label_gains)).toPandas()
    matrix = _read(lake, INTERACTIONS, row_filter=f"run_id == '{run.run_id}'")
    return {"split": split, "interaction_rows": rows, "interactions": matrix, "labels": _unseen(labels, matrix)}


def train_surfaces(settings: Settings, lake: Lake, run: RunContext, ctx: dict[str, Any]) -> dict[str, Any]:
    """The train step on :func:`label_window_interactions`' output: every surface's models and evaluation."""
    classifier = optional_topic_classifier(settings)
    users = _read(lake, USERS, ("user_id", "home_lat", "home_lon"))
    content = ContentSignals.load(lake, ctx["split"].label_start, ctx["interactions"],
                                  settings.retrain.content_signals)
    results, profiles, warm = {}, {}, last_selection(lake) if settings.retrain.selection.enabled else {}
    for surface in SURFACES:
        inputs = SurfaceInputs(surface, load_items(lake, surface, classifier),
                               ctx["interactions"][ctx["interactions"]["surface"] == surface],
                               ctx["labels"][ctx["labels"]["surface"] == surface].drop(columns="surface"))
        results[surface], users_p, items_p = train_surface(settings, inputs, users, content,
                                                           ctx["split"].label_start, run, warm.get(surface))
        profiles[surface] = (users_p, items_p, inputs.items)
    return {"results": results, "profiles": profiles}


def _already_chosen(cfg: RetrainSettings, selection: Selection | None) -> CFPlanner:
    """The CF plan the train step used: its selection's winners (the same sources dropped), else the configured one."""
    if selection is None:
        return lambda user_items: cf_plan(cfg, user_items, None)
    plan = CFPlan.of(selection)
    return lambda _: plan


def refit_on_everything(settings: Settings, lake: Lake, run: RunContext, ctx: dict[str, Any]) -> dict[str, Any]:
    """After the label window chose and scored the ranker: profiles, popularity, seen sets, CF models and
    co-visitation refit on every event up to the end of that window, so the published run is not
    ``retrain.label_days`` stale and items of those days have CF vectors. The ranker is kept as evaluated;
    content signals are read as of the same end."""
    from hybridrec.spark import spark_job

    split: TimeSplit = ctx["split"]
    everything = TimeSplit(label_start=split.label_end, label_end=split.label_end)
    with spark_job(settings, "hybridrec-retrain-refit") as spark:
        matrix = spark.sql(interactions_sql(settings.retrain, settings.signals, everything, run)).toPandas()
    matrix["last_ts"] = pd.to_datetime(matrix["last_ts"], utc=True)  # Spark hands naive UTC timestamps over
    log.info("refit: %d user-item pairs before %s (label window included)", len(matrix), split.label_end.date())
    users = _read(lake, USERS, ("user_id", "home_lat", "home_lon"))
    content = ContentSignals.load(lake, split.label_end, matrix, settings.retrain.content_signals)
    results, profiles = {}, {}
    for surface, result in ctx["results"].items():
        items = ctx["profiles"][surface][2]
        inputs = SurfaceInputs(surface, items, matrix[matrix["surface"] == surface], labels=pd.DataFrame())
        fitted = fit_surface_models(settings, inputs, users, content, split.label_end,
                                    _already_chosen(settings.retrain, result.selection))
        results[surface] = replace(result, data=fitted.data, als=fitted.als, graph=fitted.graph,
                                   covisit=fitted.covisit)
        profiles[surface] = (fitted.users_p, fitted.items_p, items)
    return {"results": results, "profiles": profiles, "refit_interaction_rows": len(matrix)}


def retrain_job(settings: Settings, fail_at: str | None = None) -> dict[str, Any]:
    """Run the nightly pipeline. ``fail_at`` names a step to fail on purpose (drills and tests)."""
    run = new_run(settings, "retrain")
    lake = Lake(settings)
    registry = Registry(lake, run)
    run_dir = registry_run_dir(settings, run.run_id)
    context: dict[str, Any] = {"run": run, "run_dir": run_dir}

    def guarded(name: str, fn):
        def step(ctx: dict) -> dict | None:
            if fail_at == name:
                raise RuntimeError(f"failure drill at step {name}")
            return fn(ctx)
        return step

    def snapshot_inputs(_: dict) -> dict:
        inputs = registry.snapshot_ids([EVENTS, USERS, PLACES, CLIPS, SEARCH_QUERIES, ITEM_EMBEDDINGS,
                                        ITEM_KEYWORDS, QUERY_TAGS])
        registry.record("running", input_snapshots=inputs)
        return {"input_snapshots": inputs}

    def interactions(_: dict) -> dict:
        return label_window_interactions(settings, lake, run)

    def train(ctx: dict) -> dict:
        return train_surfaces(settings, lake, run, ctx)

    def record_evaluation(ctx: dict) -> dict:
        from hybridrec.batch.plots import plot_run_evaluation

        results: dict[str, SurfaceResult] = ctx["results"]
        evaluation = pd.concat([r.evaluation for r in results.values()], ignore_index=True)
        lake.append(EVALUATION_RUNS, [EVALUATION_RUNS.to_arrow({c: evaluation[c].tolist() for c in EVALUATION_RUNS.column_names})], run)
        lake.replace(CANDIDATES, [_candidates_table(r, run) for r in results.values()], run)
        files = {}
        for surface, result in results.items():
            path = ranker_path(settings, run.run_id, surface)
            result.ranker.save(path, run.stamp())
            files[f"ranker-{surface}"] = str(path)
        files["evaluation_plot"] = str(plot_run_evaluation(evaluation, run_dir / "evaluation.png", settings.retrain.eval_k))
        chosen = {surface: r.selection.as_dict() for surface, r in results.items() if r.selection is not None}
        if chosen:
            (run_dir / "selection.json").write_text(json.dumps(chosen, indent=2))
            files["selection"] = str(run_dir / "selection.json")
        headline = _headline(evaluation, settings.retrain.eval_k)
        (run_dir / "metrics.json").write_text(json.dumps(headline, indent=2))
        return {"evaluation": evaluation, "model_files": files, "headline": headline}

    def refit(ctx: dict) -> dict:
        return refit_on_everything(settings, lake, run, ctx)

    def publish(ctx: dict) -> dict:
        return {"indices": publish_run(settings, run, run_dir, ctx["results"], ctx["profiles"])}

    steps = [
        Step("snapshot-inputs", guarded("snapshot-inputs", snapshot_inputs), "record Iceberg snapshot ids of every input"),
        Step("interactions", guarded("interactions", interactions), "events -> user x item confidence (Spark), label day"),
        Step("train", guarded("train", train), "ALS + graph filter, candidates, features, LightGBM ranker per surface"),
        Step("evaluate", guarded("evaluate", record_evaluation), "metrics per model and segment, plots, model files"),
        Step("refit", guarded("refit", refit), "profiles, popularity, seen, CF models on all events up to now"),
        Step("publish", guarded("publish", publish), "new versioned indices, one atomic alias swap"),
    ]
    if fail_at is not None and fail_at not in (names := [s.name for s in steps]):
        raise UnknownStep(f"{fail_at!r} is no step of the retrain; steps: {', '.join(names)}")
    return registry.run_steps(steps, context, lambda ctx: {
        "model_files": ctx["model_files"], "metrics": ctx["headline"], "indices": ctx["indices"]})


def _candidates_table(result: SurfaceResult, run: RunContext):
    ranked = result.ranked
    rank_columns = [f"{s}_rank" for s in SOURCES]
    sources = [[s for s, r in zip(SOURCES, row) if not np.isnan(r)] for row in ranked[rank_columns].to_numpy()]
    return CANDIDATES.to_arrow({
        "user_id": ranked["user_id"].tolist(), "item_id": ranked["item_id"].tolist(),
        "surface": [result.surface] * len(ranked), "sources": sources, "score": ranked["score"].astype(float).tolist(),
        "rank": ranked["rank"].astype(int).tolist(), "run_id": [run.run_id] * len(ranked)})


def _headline(evaluation: pd.DataFrame, k: int) -> dict[str, dict[str, float]]:
    """NDCG@K and Recall@K of every model over all held-out users, per surface."""
    overall = evaluation[(evaluation["segment"] == "all") & evaluation["metric"].isin([f"ndcg@{k}", f"recall@{k}"])]
    out: dict[str, dict[str, float]] = {}
    for row in overall.itertuples(index=False):
        out.setdefault(f"{row.surface}/{row.model}", {})[row.metric] = round(float(row.value), 4)
    return out
