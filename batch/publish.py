"""Publish a retrain run: new versioned item and user indices per surface, then one atomic alias swap.

Every index of the run is built and refreshed before any alias moves, and all aliases move in one
``_aliases`` call, so serving sees either the whole previous run or the whole new one. The popular
lists also go to a local file: the fallback serving answers from when OpenSearch is down.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hybridrec.config import Settings
from hybridrec.features.documents import (
    item_document, item_properties, items_alias, user_document, user_properties, users_alias,
)
from hybridrec.runinfo import RunContext
from hybridrec.search import SearchStore

log = logging.getLogger(__name__)

POPULAR_FALLBACK = 200
ITEM_META = {"place": ("title", "text", "region", "address", "price_level", "open_minute", "close_minute"),
             "clip": ("title", "text", "creator_id", "duration_s", "language", "predicted_topic_path")}


def fallback_path(settings: Settings) -> Path:
    """The last published popular lists, read by serving in degraded mode."""
    return settings.home_path / settings.retrain.models_dir / "popular-fallback.json"


def _item_docs(result, items_p: dict, items: pd.DataFrame, run: RunContext, covisit_neighbours: int
               ) -> Iterator[dict[str, Any]]:
    data = result.data
    neighbours = result.covisit.neighbours(covisit_neighbours)
    meta_columns = [c for c in ITEM_META[result.surface] if c in items.columns]
    meta = items.set_index("item_id")[meta_columns]
    for index, item_id in enumerate(data.item_ids):
        row = {k: (None if pd.isna(v) else (int(v) if isinstance(v, (np.integer,)) else v))
               for k, v in meta.loc[item_id].items()}
        yield item_document(items_p[item_id], result.surface, row, result.als.item_factors[index],
                            [(data.item_ids[j], s) for j, s in neighbours[index]], run.run_id)


def _user_docs(result, users_p: dict, run: RunContext, graph_candidates: int, batch: int = 1024
               ) -> Iterator[dict[str, Any]]:
    data = result.data
    for start in range(0, len(data.user_ids), batch):
        user_index = np.arange(start, min(start + batch, len(data.user_ids)))
        items, scores = result.graph.recommend(user_index, graph_candidates, exclude=data.seen)
        for row, u in enumerate(user_index):
            seen = data.item_ids[data.seen[u].indices]
            graph = [(data.item_ids[i], float(s)) for i, s in zip(items[row], scores[row]) if i >= 0 and np.isfinite(s)]
            yield user_document(users_p[data.user_ids[u]], result.als.user_factors[u], graph, seen.tolist(), run.run_id)


def popular_lists(results: dict, profiles: dict) -> dict[str, Any]:
    """Most popular items per surface (and per region for places), newest run's view."""
    lists: dict[str, Any] = {}
    for surface, result in results.items():
        order = np.argsort(-result.data.item_popularity)[:POPULAR_FALLBACK]
        lists[surface] = {"all": result.data.item_ids[order].tolist()}
        items = profiles[surface][2]
        if "region" in items.columns:
            popularity = pd.Series(result.data.item_popularity, index=result.data.item_ids)
            for region, members in items.groupby("region")["item_id"]:
                ranked = popularity.reindex(members).sort_values(ascending=False)
                lists[surface][region] = ranked.index[:POPULAR_FALLBACK].tolist()
    return lists


def publish_run(settings: Settings, run: RunContext, run_dir: Path, results: dict, profiles: dict) -> dict[str, str]:
    store = SearchStore(settings)
    version = run.run_id.lower()
    metadata = run.stamp()
    targets: dict[str, str] = {}
    for surface, result in results.items():
        users_p, items_p, items = profiles[surface]
        content_dim = None if result.data.item_vectors is None else result.data.item_vectors.shape[1]
        cf_dim = result.als.item_factors.shape[1]
        item_alias = store.alias_name(items_alias(surface))
        index = store.create_index(item_alias, version, item_properties(cf_dim, content_dim), metadata)
        count = store.bulk_index(index, _item_docs(result, items_p, items, run, settings.retrain.covisit_neighbours),
                                 "item_id")
        store.finish_index(index)
        targets[item_alias] = index
        user_alias = store.alias_name(users_alias(surface))
        index = store.create_index(user_alias, version, user_properties(cf_dim, content_dim), metadata)
        users = store.bulk_index(index, _user_docs(result, users_p, run, settings.retrain.graph_candidates), "user_id")
        store.finish_index(index)
        targets[user_alias] = index
        log.info("%s: indexed %d items and %d users", surface, count, users)
    popular = popular_lists(results, profiles)
    (run_dir / "popular.json").write_text(json.dumps(popular))
    store.swap_aliases(targets)
    fallback = fallback_path(settings)
    fallback.write_text(json.dumps({"run_id": run.run_id, **popular}))
    for alias in targets:
        store.prune(alias, keep=settings.retrain.keep_index_versions)
    return targets


def rollback(settings: Settings) -> dict[str, str]:
    """Point every published alias at its previous version."""
    store = SearchStore(settings)
    aliases = [store.alias_name(name(s)) for s in ("place", "clip") for name in (items_alias, users_alias)]
    targets = {alias: store.previous_version(alias) for alias in aliases}
    store.swap_aliases(targets)
    return targets
