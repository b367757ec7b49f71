"""The retrain's evaluation table with confidence intervals, on a fresh synthetic world.

The configured synthetic world (``synthetic``: seed and sizes, so the same figures come back) is
generated into a lake of its own under a temporary folder, then the retrain's own steps run on it:
interactions before the label window (Spark), per surface the CF models, candidates, features, the
ranker trained on one half of the label-window users; no publish. A fresh world has had no extraction
or distill run, so no content signals or predicted topics take part. On the other half of the users,
per surface and per user segment, NDCG@K and Recall@K (K = ``retrain.eval_k``) of

* the ranker;
* reciprocal-rank fusion (``rrf``) over the same candidate union the ranker sees: what merging the
  sources gives without learning, so the ranker's gain over it is the part of the lift that is not
  coverage;
* every single candidate source and popularity.

The ranker's gain over RRF comes with a paired bootstrap interval (users resampled; the same draw
for both lists), written as it is, whichever sign it has.

    hybridrec bench retrain
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from hybridrec.batch.jobs import generate_world_job
from hybridrec.batch.retrain import evaluated_lists, label_window_interactions, train_surfaces, user_segments
from hybridrec.benchmarks import code_state, write_result
from hybridrec.config import Settings
from hybridrec.features.segments import SEGMENTS as USER_SEGMENTS
from hybridrec.lake import Lake
from hybridrec.models.ranking_metrics import paired_bootstrap, user_metrics
from hybridrec.runinfo import new_run

log = logging.getLogger("hybridrec.bench.retrain")

SEGMENTS = ("all", *USER_SEGMENTS)
BOOTSTRAP_SEED = 0
LEVEL = 0.95


def run_benchmark(settings: Settings, bootstrap_samples: int = 1000) -> dict[str, Any]:
    load_at_start, code_at_start = os.getloadavg(), code_state()
    k = settings.retrain.eval_k
    with tempfile.TemporaryDirectory(prefix="hybridrec-bench-retrain-") as root:
        world = own_lake(settings, Path(root))
        generate_world_job(world)
        lake, run = Lake(world), new_run(world, "bench-retrain")
        prepared = label_window_interactions(world, lake, run)
        trained = train_surfaces(world, lake, run, prepared)
    surfaces = {}
    for surface, result in trained["results"].items():
        users_p = trained["profiles"][surface][0]
        labels = prepared["labels"][prepared["labels"]["surface"] == surface]
        segments = user_segments(result.ranked["user_id"].unique(), users_p, settings.retrain.heavy_user_items)
        surfaces[surface] = compare_lists(result.ranked, labels, segments, k, bootstrap_samples)
        for segment, row in surfaces[surface].items():
            gain = row["ranker_minus_rrf"][f"ndcg@{k}"]
            log.info("%s %-5s ranker %.4f rrf %.4f gain %+.4f [%+.4f, %+.4f] (%d users)", surface, segment,
                     row["models"]["ranker"][f"ndcg@{k}"], row["models"]["rrf"][f"ndcg@{k}"], gain["mean"],
                     gain["low"], gain["high"], row["users"])
    metrics = {
        "k": k,
        "label_window": {"start": prepared["split"].label_start.isoformat(),
                         "end": prepared["split"].label_end.isoformat()},
        "content_signals": "none: a fresh world has had no extraction or distill run",
        "bootstrap": {"samples": bootstrap_samples, "level": LEVEL, "seed": BOOTSTRAP_SEED, "unit": "held-out user",
                      "interval": "percentile, paired (ranker minus rrf per user)"},
        "surfaces": surfaces,
    }
    return write_world_result("retrain-synthetic", "retrain", "hybridrec bench retrain", settings, metrics,
                              f"label_days={settings.retrain.label_days}", load_at_start, code_at_start)


def write_world_result(name: str, benchmark: str, command: str, settings: Settings, metrics: dict[str, Any],
                       identity: str, load_at_start: tuple[float, float, float],
                       code_at_start: dict[str, Any]) -> dict[str, Any]:
    """Write a benchmark on a fresh synthetic world: the world's settings join the metrics and name the dataset
    (``identity`` adds what else sets it apart)."""
    cfg = settings.synthetic
    metrics = {**metrics, "world": cfg.model_dump(mode="json")}
    dataset = (f"synthetic seed={cfg.seed} users={cfg.n_users} places={cfg.n_places} clips={cfg.n_clips} "
               f"events={cfg.n_events} days={cfg.n_days} taste_weight={cfg.taste_weight}, generated afresh; "
               f"{identity}")
    path = write_result(name, benchmark, dataset, command, metrics, settings=settings, load_at_start=load_at_start,
                        code_at_start=code_at_start)
    log.info("wrote %s", path)
    return metrics


def own_lake(settings: Settings, root: Path) -> Settings:
    """The same settings with lake and model files under ``root``: the bench never touches the project's lake."""
    lake = settings.lake.model_copy(update={"kind": "sql", "uri": f"sqlite:///{root / 'catalog.db'}",
                                            "warehouse": (root / "warehouse").as_uri()})
    retrain = settings.retrain.model_copy(update={"models_dir": str(root / "models")})
    return settings.model_copy(update={"lake": lake, "retrain": retrain})


def compare_lists(ranked: pd.DataFrame, labels: pd.DataFrame, segments: dict[str, str], k: int,
                  bootstrap_samples: int) -> dict[str, Any]:
    """Per segment ("all" first): users, NDCG@K and Recall@K of every list of
    :func:`~hybridrec.batch.retrain.evaluated_lists`, and the ranker's paired gain over RRF with its interval.
    ``ranked``: the held-out candidates with the ranker's ``rank`` and each source's ``<source>_rank``;
    ``labels``: user_id, item_id of the label window; ``segments``: user_id → segment name. Users are
    taken in sorted order, so the seeded bootstrap draws the same users whatever order Spark returned."""
    relevant = labels[labels["user_id"].isin(ranked["user_id"].unique())].sort_values(["user_id", "item_id"])
    per_model = {name: user_metrics(recommended, relevant, k) for name, recommended in evaluated_lists(ranked).items()}
    names = pd.Series(segments).reindex(per_model["ranker"].index)
    out: dict[str, Any] = {}
    for segment in SEGMENTS:
        members = names.index if segment == "all" else names.index[names == segment]
        if len(members) == 0:
            continue
        chosen = {name: frame.loc[members] for name, frame in per_model.items()}
        out[segment] = {
            "users": int(len(members)),
            "models": {name: {m: round(float(frame[m].mean()), 4) for m in frame.columns}
                       for name, frame in chosen.items()},
            "ranker_minus_rrf": {m: {key: round(v, 4) for key, v in paired_bootstrap(
                chosen["ranker"][m].to_numpy(), chosen["rrf"][m].to_numpy(), bootstrap_samples, LEVEL,
                BOOTSTRAP_SEED).items()} for m in chosen["ranker"].columns},
        }
    return out
