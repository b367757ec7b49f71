"""Publish a retrain run: new versioned item and user indices per surface, then one atomic alias swap.

Every index of the run is built and refreshed before any alias moves, and all aliases move in one
``_aliases`` call, so serving sees either the whole previous run or the whole new one. The popular
lists also go to a local file (:mod:`hybridrec.fallback`): the fallback serving answers from when
OpenSearch is down. The new indices are warmed (:func:`warm_index`) before the swap, so the first feeds
of a new run do not pay for cold HNSW graphs and segment files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hybridrec.batch.candidates import CollaborativeSource, engaged, top_candidates
from hybridrec.config import CandidateSettings, Settings
from hybridrec.fallback import fallback_path, surface_lists, write_fallback
from hybridrec.features.documents import (
    CF_SPACE, item_document, item_properties, items_alias, user_document, user_properties, users_alias,
)
from hybridrec.features.candidates import covisit_seeds
from hybridrec.runinfo import RunContext
from hybridrec.search import SearchStore

log = logging.getLogger(__name__)

POPULAR_FALLBACK = 200
ITEM_META = {"place": ("title", "text", "region", "address", "price_level", "open_minute", "close_minute"),
             "clip": ("title", "text", "creator_id", "duration_s", "language", "predicted_topic_path")}


def _item_docs(result, items_p: dict, items: pd.DataFrame, run: RunContext) -> Iterator[dict[str, Any]]:
    data = result.data
    neighbours = result.covisit.neighbours()
    meta_columns = [c for c in ITEM_META[result.surface] if c in items.columns]
    meta = items.set_index("item_id")[meta_columns]
    for index, item_id in enumerate(data.item_ids):
        row = {k: (None if pd.isna(v) else (int(v) if isinstance(v, (np.integer,)) else v))
               for k, v in meta.loc[item_id].items()}
        cf_vector = None if result.als is None else result.als.item_factors[index]
        yield item_document(items_p[item_id], result.surface, row, cf_vector,
                            [(data.item_ids[j], s) for j, s in neighbours[index]], run.run_id)


def _user_docs(result, users_p: dict, run: RunContext, pool: CandidateSettings, batch: int = 1024
               ) -> Iterator[dict[str, Any]]:
    """User documents with the graph filter's list exactly as the batch pool reads it (the source's
    ``per_source`` best unseen items, ties by id) and the co-visitation seeds. A CF source the run dropped
    publishes nothing: no graph lists, no CF vectors, so serving has nothing to propose from it."""
    data = result.data
    for start in range(0, len(data.user_ids), batch):
        user_index = np.arange(start, min(start + batch, len(data.user_ids)))
        by_user = {}
        if result.graph is not None:
            lists = top_candidates([CollaborativeSource("graph", result.graph)], data, user_index, pool.per_source,
                                   pool.per_source)
            by_user = {u: list(zip(rows["item_id"], rows["graph_score"])) for u, rows in lists.groupby("user_index")}
        for u in user_index:
            seen = data.item_ids[data.seen[u].indices]
            seeds = covisit_seeds(engaged(data, u), pool.covisit_seed_items)
            cf_vector = None if result.als is None else result.als.user_factors[u]
            yield user_document(users_p[data.user_ids[u]], cf_vector, by_user.get(u, []),
                                seen.tolist(), seeds, run.run_id)


def popular_lists(results: dict, profiles: dict) -> dict[str, Any]:
    """Most popular items per surface and per region, with what a degraded feed shows of each
    (:func:`hybridrec.fallback.surface_lists`)."""
    return {surface: surface_lists(pd.Series(result.data.item_popularity, index=result.data.item_ids),
                                   profiles[surface][2], POPULAR_FALLBACK)
            for surface, result in results.items()}


WARM_TIMEOUT_S = 120.0  # a cold index's first k-NN query on a busy machine: far beyond serving's 2 s


def warm_index(store: SearchStore, index: str) -> None:
    """Run the queries serving's candidate sources run (k-NN and exact scoring on each vector field, BM25,
    a geo ring and its scoring, the popularity sort and topic aggregation) once on a new items index,
    before any alias points at it.

    The project's vectors use the ``lucene`` engine, whose HNSW graphs are Lucene segment files read
    through the page cache; the k-NN warm-up API (``/_plugins/_knn/warmup``) loads only the native
    engines' (nmslib, faiss) graphs into native memory, so for this engine a first query per source
    is what warms an index."""
    fields = ["cf_vector", "content_vector", "location", "title"]
    sample = store.client.search(index=index, body={"size": 1, "_source": fields, "query": {"match_all": {}}},
                                 request_timeout=WARM_TIMEOUT_S)["hits"]["hits"]
    if not sample:
        return
    doc = sample[0]["_source"]
    bodies: list[dict[str, Any]] = [
        {"size": 50, "sort": [{"popularity": {"order": "desc"}}], "query": {"match_all": {}}},
        {"size": 0, "aggs": {"topics": {"terms": {"field": "topic_path", "size": 100}}}},
        {"size": 50, "query": {"multi_match": {"query": doc.get("title") or "", "fields": ["title", "text", "keywords"]}}},
    ]
    for field, space in (("cf_vector", CF_SPACE), ("content_vector", "cosinesimil")):
        if doc.get(field):
            bodies.append({"size": 50, "query": {"knn": {field: {"vector": doc[field], "k": 50}}}})
            script = {"source": "knn_score", "lang": "knn",  # serving's exact scoring (candidates.exact_vectors)
                      "params": {"field": field, "query_value": doc[field], "space_type": space}}
            bodies.append({"size": 50, "query": {"script_score": {"query": {"exists": {"field": field}},
                                                                  "script": script}}})
    if doc.get("location"):
        ring = {"geo_distance": {"distance": "5km", "location": doc["location"]}}
        bodies.append({"size": 50, "query": {"bool": {"filter": [ring]}}})
        geo_score = ("(Math.log1p(doc['popularity'].value) + 1.0)"  # how the geo source orders its ring
                     " / (1.0 + doc['location'].arcDistance(params.lat, params.lon) / 5000.0)")
        bodies.append({"size": 50, "sort": ["_score", {"item_id": "asc"}], "track_scores": True, "query": {
            "script_score": {"query": {"bool": {"filter": [ring]}}, "script": {
                "source": geo_score, "params": {"lat": doc["location"]["lat"], "lon": doc["location"]["lon"]}}}}})
    lines = [line for body in bodies for line in ({"index": index}, {**body, "_source": False})]
    responses = store.client.msearch(body=lines, request_timeout=WARM_TIMEOUT_S)["responses"]
    failed = [r["error"] for r in responses if "error" in r]
    if failed:
        raise RuntimeError(f"warming {index} failed: {failed[0]}")


def publish_run(settings: Settings, run: RunContext, run_dir: Path, results: dict, profiles: dict) -> dict[str, str]:
    store = SearchStore(settings)
    version = run.run_id.lower()
    metadata = run.stamp()
    targets: dict[str, str] = {}
    for surface, result in results.items():
        users_p, items_p, items = profiles[surface]
        content_dim = None if result.data.item_vectors is None else result.data.item_vectors.shape[1]
        cf_dim = None if result.als is None else result.als.item_factors.shape[1]
        item_alias = store.alias_name(items_alias(surface))
        index = store.create_index(item_alias, version, item_properties(cf_dim, content_dim), metadata)
        count = store.bulk_index(index, _item_docs(result, items_p, items, run), "item_id")
        store.finish_index(index)
        warm_index(store, index)
        targets[item_alias] = index
        user_alias = store.alias_name(users_alias(surface))
        index = store.create_index(user_alias, version, user_properties(cf_dim, content_dim), metadata)
        users = store.bulk_index(index, _user_docs(result, users_p, run, settings.candidates), "user_id")
        store.finish_index(index)
        targets[user_alias] = index
        log.info("%s: indexed %d items and %d users", surface, count, users)
    popular = popular_lists(results, profiles)
    (run_dir / "popular.json").write_text(json.dumps(popular))
    store.swap_aliases(targets)
    write_fallback(fallback_path(settings), {"run_id": run.run_id, **popular})
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
