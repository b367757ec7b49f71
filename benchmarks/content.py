"""What content understanding is worth to the feeds: the ranker with no content, with extracted content, with the truth.

A fresh synthetic world (``synthetic``; its users have tastes, so the place aspects that reviews state
move engagement) is generated into a lake of its own, the extraction stage reads its reviews, clips
and queries, and the retrain's interactions and train steps run three times on the same split with
``retrain.content_signals`` set to

* ``none``: no content signals at all;
* ``extracted``: what the extraction stage read (tags, interest-query tags, embeddings);
* ``truth_tags``: the world's true item and query tags in place of the extracted ones (the ceiling
  extraction could reach with these features).

The CF models use the configured parameters in all three (model selection off), so only content
differs. Per surface and user segment, NDCG@K and Recall@K of the ranker on the held-out users, and
paired bootstrap intervals for extracted − none and truth − extracted (the gap extraction leaves).
The world's text is generated from the project's own word lists, so how well extraction reads it
is a figure by construction; what this measures is how much the ranker makes of what it is given.

    hybridrec bench content
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from hybridrec.batch.extract import extract_job
from hybridrec.batch.jobs import generate_world_job
from hybridrec.batch.retrain import label_window_interactions, train_surfaces, user_segments
from hybridrec.bench.retrain import BOOTSTRAP_SEED, LEVEL, SEGMENTS, own_lake, write_world_result
from hybridrec.benchmarks import code_state
from hybridrec.config import Settings
from hybridrec.lake import Lake
from hybridrec.models.ranking_metrics import paired_bootstrap, user_metrics
from hybridrec.runinfo import new_run

log = logging.getLogger("hybridrec.bench.content")

MODES = ("none", "extracted", "truth_tags")
GAPS = (("extracted_minus_none", "extracted", "none"), ("truth_minus_extracted", "truth_tags", "extracted"))


def run_benchmark(settings: Settings, bootstrap_samples: int = 1000) -> dict[str, Any]:
    load_at_start, code_at_start = os.getloadavg(), code_state()
    k = settings.retrain.eval_k
    retrain = settings.retrain.model_copy(update={"selection": settings.retrain.selection.model_copy(
        update={"enabled": False})})
    per_mode: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="hybridrec-bench-content-") as root:
        world = own_lake(settings.model_copy(update={"retrain": retrain}), Path(root))
        generate_world_job(world)
        extracted = extract_job(world)
        lake, run = Lake(world), new_run(world, "bench-content")
        prepared = label_window_interactions(world, lake, run)
        for mode in MODES:
            log.info("ranker with content signals: %s", mode)
            variant = world.model_copy(update={"retrain": world.retrain.model_copy(update={"content_signals": mode})})
            trained = train_surfaces(variant, lake, run, prepared)
            per_mode[mode] = {surface: _per_user(result, trained["profiles"][surface][0], prepared, surface, k,
                                                 settings.retrain.heavy_user_items)
                              for surface, result in trained["results"].items()}
    surfaces = {surface: _compare({m: per_mode[m][surface] for m in MODES}, bootstrap_samples)
                for surface in per_mode[MODES[0]]}
    for surface, segments in surfaces.items():
        row = segments["all"]
        log.info("%s ndcg@%d: none %.4f, extracted %.4f, truth %.4f", surface, k,
                 *(row["ranker"][m][f"ndcg@{k}"] for m in MODES))
    metrics = {
        "k": k,
        "extraction": {name: {key: step[key] for key in ("backend", "accepted", "rejected")}
                       for name, step in extracted.items() if isinstance(step, dict) and "backend" in step},
        "cf_parameters": "configured (retrain.als, retrain.graph_filter); model selection off so only content differs",
        "bootstrap": {"samples": bootstrap_samples, "level": LEVEL, "seed": BOOTSTRAP_SEED, "unit": "held-out user"},
        "surfaces": surfaces,
    }
    return write_world_result("content-ablation", "content_ablation", "hybridrec bench content", settings, metrics,
                              "extraction run on it", load_at_start, code_at_start)


def _per_user(result, users_p: dict, prepared: dict[str, Any], surface: str, k: int,
              heavy_items: int) -> tuple[pd.DataFrame, pd.Series]:
    """The ranker's NDCG@K and Recall@K per held-out user, and each user's segment."""
    ranked = result.ranked
    labels = prepared["labels"][prepared["labels"]["surface"] == surface]
    relevant = labels[labels["user_id"].isin(ranked["user_id"].unique())].sort_values(["user_id", "item_id"])
    metrics = user_metrics(ranked[["user_id", "item_id", "rank"]], relevant, k)
    segments = pd.Series(user_segments(ranked["user_id"].unique(), users_p, heavy_items)).reindex(metrics.index)
    return metrics, segments


def _compare(by_mode: dict[str, tuple[pd.DataFrame, pd.Series]], bootstrap_samples: int) -> dict[str, Any]:
    """Per segment: the ranker's mean metrics under each mode and the paired gaps with their intervals.
    Users are those held out in every mode (the same split, so the same users), in sorted order."""
    users = sorted(set.intersection(*(set(frame.index) for frame, _ in by_mode.values())))
    segments = by_mode["none"][1].reindex(users)
    out: dict[str, Any] = {}
    for segment in SEGMENTS:
        members = users if segment == "all" else [u for u in users if segments[u] == segment]
        if not members:
            continue
        frames = {mode: frame.loc[members] for mode, (frame, _) in by_mode.items()}
        out[segment] = {
            "users": len(members),
            "ranker": {mode: {m: round(float(f[m].mean()), 4) for m in f.columns} for mode, f in frames.items()},
            **{name: {m: {key: round(v, 4) for key, v in paired_bootstrap(
                frames[a][m].to_numpy(), frames[b][m].to_numpy(), bootstrap_samples, LEVEL, BOOTSTRAP_SEED).items()}
                for m in frames[a].columns} for name, a, b in GAPS},
        }
    return out
