"""Gowalla collaborative-filtering benchmark on the LightGCN split (all-ranking, top-20).

Trains each requested model on ``train.txt``, scores every item for every test user, excludes the
user's training items and reports Recall@20 / NDCG@20 as in the LightGCN paper (see
:mod:`hybridrec.models.evaluation`). Hyper-parameters were chosen on a seeded 10% holdout of each
user's training items (``--split validation``; ChebyCF's grid with ``gowalla_sweep.py``), never on
the test set; they, the data folder and the protocol are the ``gowalla`` section of the config.
A full run scores every model on that validation split, then once on test, and records both.

    python benchmarks/gowalla.py                       # every model, validation + test, writes JSON
    python benchmarks/gowalla.py --models bspm --split validation --set bspm.sharpen_time=3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from hybridrec.benchmarks import machine_description, provenance, results_dir
from hybridrec.config import GowallaSettings, Settings, load_settings
from hybridrec.models.collaborative import MODELS
from hybridrec.models.evaluation import holdout_split, recall_ndcg_at_k

log = logging.getLogger("hybridrec.bench.gowalla")


PUBLISHED = {
    "LightGCN": {"recall@20": 0.1824, "ndcg@20": 0.1554,
                 "source": "kuandeng/LightGCN README (the paper rounds it to 0.1830)"},
    "UltraGCN": {"recall@20": 0.1862, "ndcg@20": 0.1580, "source": "reczoo/BARS gowalla_x1"},
    "SimpleX": {"recall@20": 0.1872, "ndcg@20": 0.1557, "source": "reczoo/BARS gowalla_x1"},
    "EASE^R": {"recall@20": 0.1765, "ndcg@20": 0.1467, "source": "reczoo/BARS gowalla_x1"},
    "MF-BPR": {"recall@20": 0.1627, "ndcg@20": 0.1378, "source": "reczoo/BARS gowalla_x1"},
    "ItemCF": {"recall@20": 0.1570, "ndcg@20": 0.1214, "source": "reczoo/BARS gowalla_x1"},
    "GF-CF": {"recall@20": 0.1849, "ndcg@20": 0.1518, "source": "Shen et al., CIKM 2021"},
    "BSPM-EM": {"recall@20": 0.1920, "ndcg@20": 0.1597, "source": "Choi et al., SIGIR 2023"},
    "Turbo-CF": {"recall@20": 0.1835, "ndcg@20": None, "source": "Park et al., SIGIR 2024"},
    "NESCL": {"recall@20": 0.1917, "ndcg@20": 0.1617,
              "source": "Sun et al., TKDE 2023 (PeiJieSun/NESCL README)"},
    "ChebyCF": {"recall@20": 0.1941, "ndcg@20": 0.1616,
                "source": "Kim et al., SIGIR 2025 (chanwoo0806/ChebyCF README)"},
}
"""Published figures on this exact split and protocol, for the report."""


def load_interactions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(user_index, item_index) pairs from a LightGCN file: one ``user item item ...`` line per
    user."""
    users, items = [], []
    with open(path) as lines:
        for line_no, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                row = np.array(fields, dtype=np.int64)
            except ValueError as err:
                raise ValueError(f"{path}:{line_no}: expected integer ids: {err}") from None
            users.append(np.full(len(row) - 1, row[0]))
            items.append(row[1:])
    return np.concatenate(users), np.concatenate(items)


def load_gowalla(data_dir: Path) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(train, test) ``user_items`` matrices sized by the largest id in either file."""
    train_pairs = load_interactions(data_dir / "train.txt")
    test_pairs = load_interactions(data_dir / "test.txt")
    shape = (int(max(train_pairs[0].max(), test_pairs[0].max())) + 1,
             int(max(train_pairs[1].max(), test_pairs[1].max())) + 1)

    def to_csr(pairs: tuple[np.ndarray, np.ndarray]) -> sp.csr_matrix:
        matrix = sp.csr_matrix((np.ones(len(pairs[0]), dtype=np.float32), pairs), shape=shape)
        matrix.data[:] = 1.0  # a repeated pair is still one interaction
        return matrix

    train, test = to_csr(train_pairs), to_csr(test_pairs)
    log.info("loaded %s: %d users x %d items, %d train and %d test interactions", data_dir,
             *shape, train.nnz, test.nnz)
    return train, test


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0) so each model gets its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


SPLITS = ("validation", "test")
"""``validation``: fit on 90% of each user's training items, evaluate on the other 10% (where the
settings were chosen); ``test``: fit on all of train, evaluate on the published test split."""


def run_gowalla_benchmark(data_dir: Path, models: list[str], *, splits: tuple[str, ...] = SPLITS,
                          params: dict[str, dict[str, Any]] | None = None,
                          output: Path | None = None, cfg: GowallaSettings | None = None,
                          settings: Settings | None = None, keep_others: bool = False) -> dict[str, Any]:
    """Fit and evaluate ``models`` (names from ``MODELS``) on each of ``splits`` and return the
    report dict.

    Every model is scored on validation, then once on test; the best model is the one with the
    highest validation NDCG@k (when validation ran), so test never chooses. ``params`` overrides
    the configured hyper-parameters (``cfg``, default: the config's ``gowalla`` section) per
    model. The report is written as JSON to ``output`` unless it is None; with ``keep_others``,
    the models already in ``output`` and not run now are kept (each entry carries its own run's
    commit, date and load), so one family can be re-measured without re-running all.
    """
    settings = settings or (load_settings() if cfg is None else None)
    cfg = cfg or settings.gowalla
    K = cfg.k  # the protocol's cut-off, named as in the papers
    load_at_start = os.getloadavg()
    unknown = [name for name in models if name not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    if not splits or set(splits) - set(SPLITS):
        raise ValueError(f"splits must be some of {SPLITS}, got {splits!r}")
    train, test = load_gowalla(Path(data_dir))
    data = {}
    if "validation" in splits:
        data["validation"] = holdout_split(train, cfg.validation_share, cfg.validation_seed)
        log.info("validation split: fitting on %d, evaluating on %d held-out interactions",
                 data["validation"][0].nnz, data["validation"][1].nnz)
    if "test" in splits:
        data["test"] = (train, test)
    results: dict[str, dict[str, Any]] = {}
    for name in models:
        model_params = {**cfg.model_params(name), **(params or {}).get(name, {})}
        load_before = os.getloadavg()
        results[name] = {}
        for split, (fit_on, evaluate_on) in data.items():
            model = MODELS[name](**model_params)
            peak_is_per_model = _reset_peak_rss()
            start = time.perf_counter()
            model.fit(fit_on)
            train_s = time.perf_counter() - start
            metrics = recall_ndcg_at_k(model, fit_on, evaluate_on, k=K)
            results[name]["params"] = model.params()
            results[name][split] = {
                f"recall@{K}": round(metrics[f"recall@{K}"], 5),
                f"ndcg@{K}": round(metrics[f"ndcg@{K}"], 5),
                "train_s": round(train_s, 1), "eval_s": round(metrics["eval_s"], 1),
                "peak_rss_mb": round(_peak_rss_mb()),
                "peak_rss_scope": "model" if peak_is_per_model else "process"}
            del model
        results[name]["run"] = {**provenance(settings, load_at_start=load_before),
                                "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if keep_others and output is not None and output.is_file():
        previous = json.loads(output.read_text()).get("models", {})
        kept = {name: entry for name, entry in previous.items()
                if name not in results and set(data) <= set(entry)}
        log.info("kept earlier results of %s from %s", sorted(kept) or "no model", output)
        results = {**kept, **results}
    chosen_on = "validation" if "validation" in data else "test"
    best = max(results, key=lambda name: results[name][chosen_on][f"ndcg@{K}"])
    final = "test" if "test" in data else "validation"
    report = {
        "benchmark": "gowalla",
        "dataset": "gowalla (LightGCN split)",
        "splits": list(data),
        "protocol": f"all-ranking, train items excluded, top-{K}; settings chosen on validation "
                    f"({cfg.validation_share:.0%} of each user's training items, seed "
                    f"{cfg.validation_seed}), test scored once",
        "command": "hybridrec bench gowalla",
        "machine": machine_description(),  # measured now, not a literal
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance(settings, load_at_start=load_at_start),
        "users_evaluated": {split: int(np.count_nonzero(np.diff(evaluate_on.indptr)))
                            for split, (_, evaluate_on) in data.items()},
        "best_model": best,
        "best_model_chosen_on": chosen_on,
        "split": final,
        f"recall@{K}": results[best][final][f"recall@{K}"],
        f"ndcg@{K}": results[best][final][f"ndcg@{K}"],
        "models": results,
        "published": PUBLISHED,
    }
    print(format_table(results, K))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
        log.info("wrote %s", output)
    return report


def format_table(results: dict[str, dict[str, Any]], k: int) -> str:
    header = f"{'model':<8} {'split':<10} {f'recall@{k}':>9} {f'ndcg@{k}':>8} {'train_s':>8} " \
             f"{'eval_s':>7} {'peak_rss_mb':>11}"
    rows = [f"{name:<8} {split:<10} {r[f'recall@{k}']:>9.4f} {r[f'ndcg@{k}']:>8.4f} "
            f"{r['train_s']:>8.1f} {r['eval_s']:>7.1f} {r['peak_rss_mb']:>11}"
            for name, entry in results.items() for split, r in entry.items() if split in SPLITS]
    return "\n".join([header, *rows])


def _parse_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``["bspm.sharpen_time=3", ...]`` -> ``{"bspm": {"sharpen_time": 3}}`` (JSON values)."""
    overrides: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        model, dot, param = key.partition(".")
        if not (sep and dot and model and param):
            raise ValueError(f"--set expects MODEL.PARAM=VALUE, got {pair!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        overrides.setdefault(model, {})[param] = parsed
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: the config's gowalla.path")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=sorted(MODELS))
    parser.add_argument("--split", choices=["validation", "test", "both"], default="both",
                        help="validation alone for tuning; both (default) scores validation, then test once")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="MODEL.PARAM=VALUE", help="override a hyper-parameter")
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the models already in the output JSON that this run does not measure")
    parser.add_argument("--output", type=Path, default=None,
                        help="report JSON (default: gowalla.json in the results folder when test is "
                             "scored, none for validation alone)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        overrides = _parse_overrides(args.overrides)
    except ValueError as err:
        parser.error(str(err))
    output = args.output or (results_dir() / "gowalla.json" if args.split != "validation" else None)
    settings = load_settings()
    cfg = settings.gowalla
    data_dir = args.data_dir or cfg.data_dir
    missing = [name for name in ("train.txt", "test.txt") if not (data_dir / name).is_file()]
    if missing:
        parser.error(f"--data-dir {data_dir}: no {' or '.join(missing)} (the LightGCN split)")
    splits = SPLITS if args.split == "both" else (args.split,)
    run_gowalla_benchmark(data_dir, args.models, splits=splits, params=overrides, output=output,
                          cfg=cfg, settings=settings, keep_others=args.keep_others)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
