"""Candidate sources on OpenSearch, all in one ``_msearch`` round trip, scored exactly as batch scores them.

The ranker was trained on batch candidates (:mod:`hybridrec.batch.candidates`), so each source's
score here is the same formula: ``als`` = user factors · item factors (k-NN finds the neighbours,
the dot product is recomputed from the returned vectors), ``content`` = cosine of content vectors
(Lucene reports (1 + cos) / 2) or, without vectors, topic affinity × (log1p(popularity) + 1e-3),
``popular`` = log1p(popularity), ``geo`` = (log1p(popularity) + 1) / (1 + distance / radius),
``graph`` = the precomputed BSPM list of the user document, ``covisit`` = the sum of the published
neighbour scores of the user's engaged items. Two sources exist only online and have no ranker
feature: ``keyword`` (BM25 on the user's interest tags) and ``trending``; they widen recall and the
ranker judges their items by the profile features.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hybridrec.features.ranking import SOURCES, haversine_km
from hybridrec.serving.store import ServingStore

ITEM_FIELDS = ["item_id", "topic_path", "tags", "popularity", "trending", "created_at", "location", "cf_vector",
               "content_vector", "title", "creator_id", "region", "open_minute", "close_minute", "keywords"]
SERVING_ONLY_SOURCES = ("keyword", "trending")
CONTENT_TOPIC_EPSILON = 1e-3  # batch ContentSource's weight floor for zero-popularity items


@dataclass(frozen=True)
class CandidateRequest:
    """Everything the sources need about one user at one moment (assembled by the load step)."""

    user_id: str
    surface: str
    depth: int
    exclude: frozenset[str]                         # seen, engaged and skipped items
    cf_vector: list[float] | None = None
    content_vectors: tuple[list[float], ...] = ()   # long-term profile, short-term session interest
    topic_affinity: Mapping[str, float] = field(default_factory=dict)
    interest_tags: Mapping[str, float] = field(default_factory=dict)
    graph: tuple[tuple[str, float], ...] = ()
    covisit_seeds: tuple[str, ...] = ()
    location: tuple[float, float] | None = None
    radius_km: float = 5.0
    item_filter: tuple[dict[str, Any], ...] = ()    # business filters every query applies (e.g. regions)


@dataclass
class Candidates:
    """Each source's scores and the documents of every proposed item."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, source: str, hits: Iterable[tuple[str, float, dict[str, Any] | None]]) -> None:
        bucket = self.scores.setdefault(source, {})
        for item_id, score, doc in hits:
            if math.isfinite(score):
                bucket[item_id] = max(score, bucket.get(item_id, -math.inf))
                if doc is not None:
                    self.items.setdefault(item_id, doc)

    def sources_of(self, item_id: str) -> list[str]:
        return [s for s, scores in self.scores.items() if item_id in scores]

    def counts(self) -> dict[str, int]:
        return {source: len(scores) for source, scores in self.scores.items()}

    def frame(self, user_id: str) -> pd.DataFrame:
        """One row per item with ``<source>_score``/``<source>_rank`` (1-based by score) for the ranker's sources."""
        ids = [i for i in self.items]
        frame = pd.DataFrame({"user_id": user_id, "item_id": ids})
        for source in SOURCES:
            scores = self.scores.get(source, {})
            values = pd.Series([scores.get(i, np.nan) for i in ids], dtype=float)
            frame[f"{source}_score"] = values
            frame[f"{source}_rank"] = values.rank(ascending=False, method="first")
        return frame

    def restrict(self, keep: set[str]) -> None:
        """Drop every item not in ``keep`` (excluded or without a document)."""
        self.items = {i: d for i, d in self.items.items() if i in keep}
        self.scores = {s: {i: v for i, v in b.items() if i in self.items} for s, b in self.scores.items()}


def _filters(request: CandidateRequest) -> list[dict[str, Any]]:
    must_not = [{"ids": {"values": sorted(request.exclude)}}] if request.exclude else []
    return [{"bool": {"filter": list(request.item_filter), "must_not": must_not}}]


def _knn(field_name: str, vector: list[float], request: CandidateRequest) -> dict[str, Any]:
    query = {"vector": vector, "k": request.depth, "filter": _filters(request)[0]}
    return {"size": request.depth, "_source": ITEM_FIELDS, "query": {"knn": {field_name: query}}}


def _scripted(script: str, params: dict[str, Any], request: CandidateRequest,
              extra_filter: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    base = {"bool": {"filter": _filters(request) + (extra_filter or [])}}
    return {"size": request.depth, "_source": ITEM_FIELDS,
            "query": {"script_score": {"query": base, "script": {"source": script, "params": params}}}}


def _keyword_query(request: CandidateRequest, labels: Mapping[str, str]) -> dict[str, Any]:
    """BM25 over the item text for the interest tags' words, plus exact tag matches weighted by interest."""
    tags = sorted(request.interest_tags.items(), key=lambda kv: -kv[1])
    should: list[dict[str, Any]] = [{"term": {"tags": {"value": t, "boost": max(w, 1e-3)}}} for t, w in tags]
    words = " ".join(labels.get(t, t.rsplit("/", 1)[-1].replace("_", " ")) for t, _ in tags)
    should.append({"multi_match": {"query": words, "fields": ["title", "text", "keywords"]}})
    query = {"bool": {"should": should, "minimum_should_match": 1, "filter": _filters(request)}}
    return {"size": request.depth, "_source": ITEM_FIELDS, "query": query}


def build_queries(request: CandidateRequest, labels: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """One search body per source that has something to go on, keyed by a query name."""
    queries: dict[str, dict[str, Any]] = {}
    if request.cf_vector:
        queries["als"] = _knn("cf_vector", request.cf_vector, request)
    for n, vector in enumerate(request.content_vectors):
        queries[f"content:{n}"] = _knn("content_vector", vector, request)
    leaf_affinity = {t: a for t, a in request.topic_affinity.items() if a > 0}
    if not request.content_vectors and leaf_affinity:
        script = "params.affinity.getOrDefault(doc['topic_path'].value, 0.0) * (Math.log1p(doc['popularity'].value) + params.eps)"
        queries["content:topics"] = _scripted(script, {"affinity": leaf_affinity, "eps": CONTENT_TOPIC_EPSILON},
                                              request, [{"terms": {"topic_path": sorted(leaf_affinity)}}])
    if request.interest_tags:
        queries["keyword"] = _keyword_query(request, labels)
    if request.surface == "place" and request.location is not None:
        lat, lon = request.location
        geo_filter = {"geo_distance": {"distance": f"{request.radius_km}km", "location": {"lat": lat, "lon": lon}}}
        queries["geo"] = _scripted("Math.log1p(doc['popularity'].value) + 1", {}, request, [geo_filter])
        queries["geo"]["size"] = request.depth * 4  # reranked by distance below: fetch a wider ring
    graph_ids = [i for i, _ in request.graph if i not in request.exclude][:request.depth]
    if graph_ids:
        queries["graph"] = {"size": len(graph_ids), "_source": ITEM_FIELDS, "query": {"ids": {"values": graph_ids}}}
    if request.covisit_seeds:
        queries["covisit:seeds"] = {"size": len(request.covisit_seeds), "_source": ["covisit"],
                                    "query": {"ids": {"values": list(request.covisit_seeds)}}}
    return queries


def _dot(a: list[float] | None, b: list[float] | None) -> float:
    return float(np.dot(a, b)) if a and b and len(a) == len(b) else math.nan


def covisit_scores(seed_docs: Iterable[dict[str, Any]], exclude: frozenset[str], depth: int) -> dict[str, float]:
    """Sum of the seeds' published neighbour scores per item, top ``depth``."""
    totals: dict[str, float] = {}
    for doc in seed_docs:
        for neighbour in doc.get("covisit") or ():
            item_id = neighbour["item_id"]
            if item_id not in exclude:
                totals[item_id] = totals.get(item_id, 0.0) + float(neighbour["score"])
    return dict(sorted(totals.items(), key=lambda kv: -kv[1])[:depth])


GLOBAL_QUERIES = {  # the same for every user: computed once per refresh, not per request
    "popular": "Math.log1p(doc['popularity'].value)",
    "trending": "doc['trending'].value * Math.log1p(doc['popularity'].value)",
}


class GlobalLists:
    """Popular and trending items per surface, refreshed every ``ttl_s``; each request drops its
    excluded items locally. ``size`` leaves room for what a heavy user has already seen."""

    def __init__(self, store: ServingStore, ttl_s: float, size: int):
        self.store, self.ttl_s, self.size = store, ttl_s, size
        self._lists: dict[str, tuple[float, dict[str, list[tuple[str, float, dict[str, Any]]]]]] = {}
        self._lock = threading.Lock()

    def get(self, surface: str) -> dict[str, list[tuple[str, float, dict[str, Any]]]]:
        fetched_at, lists = self._lists.get(surface, (-math.inf, {}))
        if time.monotonic() - fetched_at < self.ttl_s:
            return lists
        with self._lock:
            bodies = [{"size": self.size, "_source": ITEM_FIELDS,
                       "query": {"script_score": {"query": {"match_all": {}}, "script": {"source": script}}}}
                      for script in GLOBAL_QUERIES.values()]
            results = self.store.msearch(self.store.items_index(surface), bodies)
            lists = {name: [(h["_id"], float(h["_score"]), h["_source"]) for h in hits]
                     for name, hits in zip(GLOBAL_QUERIES, results)}
            self._lists[surface] = (time.monotonic(), lists)
        return lists


def gather(store: ServingStore, globals_: GlobalLists, request: CandidateRequest,
           labels: Mapping[str, str]) -> Candidates:
    """Run every source (one ``_msearch``, plus one ``_mget`` for co-visited items not found otherwise)."""
    queries = build_queries(request, labels)
    results = dict(zip(queries, store.msearch(store.items_index(request.surface), list(queries.values()))))
    out = Candidates()
    allowed_regions = {v for f in request.item_filter for v in f.get("terms", {}).get("region", ())}
    for name, hits in globals_.get(request.surface).items():
        out.add(name, [h for h in hits if h[0] not in request.exclude
                       and (not allowed_regions or h[2].get("region") in allowed_regions)][:request.depth])
    for name, hits in results.items():
        source = name.split(":", 1)[0]
        docs = [(h["_id"], h.get("_source", {}), float(h["_score"])) for h in hits]
        if name == "covisit:seeds":
            continue
        if source == "als":
            out.add("als", ((i, _dot(request.cf_vector, d.get("cf_vector")), d) for i, d, _ in docs))
        elif source == "content" and name != "content:topics":
            out.add("content", ((i, 2.0 * s - 1.0, d) for i, d, s in docs))  # Lucene cosinesimil → cosine
        elif source == "geo":
            out.add("geo", _geo_scores(docs, request))
        elif source == "graph":
            graph = dict(request.graph)
            out.add("graph", ((i, graph[i], d) for i, d, _ in docs))
        else:  # popular, trending, keyword, content:topics: the query's own score is batch's formula
            out.add(source, ((i, s, d) for i, d, s in docs))
    if "covisit:seeds" in results:
        seeds = [h.get("_source", {}) for h in results["covisit:seeds"]]
        scores = covisit_scores(seeds, request.exclude, request.depth)
        missing = [i for i in scores if i not in out.items]
        fetched = store.get_items(request.surface, missing, ITEM_FIELDS)
        out.add("covisit", ((i, s, out.items.get(i) or fetched.get(i)) for i, s in scores.items()))
    out.restrict(set(out.items) - request.exclude)
    return out


def _geo_scores(docs: list[tuple[str, dict[str, Any], float]], request: CandidateRequest):
    lat, lon = request.location  # type: ignore[misc]
    located = [(i, d) for i, d, _ in docs if d.get("location")]
    if not located:
        return []
    item_lat = np.array([d["location"]["lat"] for _, d in located])
    item_lon = np.array([d["location"]["lon"] for _, d in located])
    distance = haversine_km(np.full(len(located), lat), np.full(len(located), lon), item_lat, item_lon)
    popularity = np.log1p([float(d.get("popularity", 0.0)) for _, d in located])
    scores = (popularity + 1.0) / (1.0 + distance / request.radius_km)
    ranked = sorted(zip(located, scores, distance), key=lambda p: -p[1])[:request.depth]
    return [(i, float(s), d) for (i, d), s, km in ranked if km <= request.radius_km]
