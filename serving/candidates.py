"""Candidate sources as batch has them, at as little OpenSearch work per request as possible.

The ranker was trained on batch candidates (:mod:`hybridrec.batch.candidates`), so OpenSearch only
finds each source's items here: every score is recomputed from the published documents with the
formulas of :mod:`hybridrec.features.candidates`, and :func:`~hybridrec.features.candidates.pool`
makes the lists, ranks and the pool exactly as batch does. ``als`` = user factors · item factors (the
k-NN index retrieves by that inner product), ``content`` = cosine of content vectors or, without
vectors, topic affinity × popularity, ``popular``, ``trending``, ``geo`` = popularity by distance,
``keyword`` = the interest weights of the item's tags, ``graph`` = the published BSPM list of the user
document, ``covisit`` = the published neighbour scores of the user's seeds. Request-time context has
no batch counterpart and widens a source: the request's location (geo), the session interest vector
(content, the better cosine of the two), recent engaged items (covisit seeds) and search words (keyword,
then scored by BM25 plus the tag weights).

Where the time goes decides the shape. Per request OpenSearch runs only what depends on the user —
k-NN, BM25 and the geo ring — in one ``_msearch`` that returns ids and scores, no documents: the
ids are read from doc values (:data:`IDS_ONLY`), because loading a hit's stored ``_id`` decompresses
the stored block holding its ``_source``, 512-d vectors and all, and that was most of each search. What
is the same for every user (popular, trending, the most popular items of each topic) is fetched
once per refresh interval (:class:`GlobalLists`). Item documents come from :class:`ItemCache`: a
published index never changes, so each document is read from OpenSearch once. Already seen or
skipped items are dropped here rather than by a ``must_not ids`` filter, which would make Lucene
filter every k-NN and BM25 query per request; queries ask for a few more hits instead.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridrec.features import candidates as formulas
from hybridrec.features.documents import CF_SPACE, item_profile_from_document
from hybridrec.features.ranking import ItemProfile, haversine_km
from hybridrec.serving.store import ServingStore

log = logging.getLogger(__name__)

ITEM_FIELDS = ["item_id", "topic_path", "predicted_topic_path", "tags", "popularity", "trending", "created_at",
               "location", "cf_vector", "content_vector", "title", "creator_id", "region", "open_minute",
               "close_minute", "keywords"]
CACHED_FIELDS = [*ITEM_FIELDS, "covisit"]
VECTOR_FIELDS = ("cf_vector", "content_vector")
ITEM_CACHE_SIZE = 200_000  # documents per worker, ~1 KB each with a 64-d vector: a whole catalogue of this size
BY_SCORE = {"sort": ["_score", {"item_id": "asc"}], "track_scores": True}  # ties as the pool breaks them
IDS_ONLY = {"stored_fields": "_none_", "docvalue_fields": ["item_id"]}  # hits carry fields.item_id and the score


def hit_id(hit: dict[str, Any]) -> str:
    """The item id of a hit of an :data:`IDS_ONLY` search."""
    return hit["fields"]["item_id"][0]


@dataclass(frozen=True)
class CandidateRequest:
    """Everything the sources need about one user at one moment (assembled by the load step)."""

    user_id: str
    surface: str
    index: str                                      # the concrete items index of the served run
    depth: int                                      # each source's list (candidates.per_source)
    exclude: frozenset[str]                         # seen, engaged and skipped items
    cf_vector: list[float] | None = None
    content_vectors: tuple[list[float], ...] = ()   # long-term profile, short-term session interest
    topic_affinity: Mapping[str, float] = field(default_factory=dict)
    interest_tags: Mapping[str, float] = field(default_factory=dict)
    interest_keywords: tuple[str, ...] = ()         # words of recent interest searches (open-world)
    graph: tuple[tuple[str, float], ...] = ()
    covisit_seeds: tuple[str, ...] = ()             # recent engaged items first, then the published seeds
    location: tuple[float, float] | None = None
    radius_km: float = 5.0
    item_filter: tuple[dict[str, Any], ...] = ()    # business filters every source applies (e.g. regions)
    exact_vectors: bool = False                     # als and content by exact scoring, not HNSW (candidates.*)

    @property
    def regions(self) -> set[str]:
        """Regions the business filter allows (empty: all); applied locally to sources without a query."""
        return {v for f in self.item_filter for v in f.get("terms", {}).get("region", ())}

    def fetch_size(self, wanted: int) -> int:
        """Hits to ask for so that ``wanted`` usually remain once excluded items are dropped locally:
        up to twice the depth more for users who have seen a lot."""
        return wanted + min(len(self.exclude), 2 * self.depth)


@dataclass
class Candidates:
    """Each source's scores and the documents (and ranker profiles) of every proposed item; after
    :meth:`pool`, only the pooled items and their candidate columns."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    profiles: dict[str, ItemProfile] = field(default_factory=dict)
    columns: dict[str, np.ndarray] | None = None

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
        return {source: len(scores) for source, scores in self.scores.items() if scores}

    def pool(self, user_id: str, depth: int, size: int) -> None:
        """Keep each source's ``depth`` best items and of their union the ``size`` of highest fused rank
        (:func:`hybridrec.features.candidates.pool`, as batch does); items outside the pool go."""
        rows = [(source, item_id, score) for source, bucket in self.scores.items()
                for item_id, score in bucket.items() if item_id in self.items]
        sources, ids, values = (list(c) for c in zip(*rows)) if rows else ([], [], [])
        self.columns = formulas.pool([user_id] * len(rows), sources, ids, values, depth, size)
        self.restrict(set(self.columns["item_id"]))
        for source, bucket in self.scores.items():  # only listed items keep a source (its rank is not NaN)
            ranks = dict(zip(self.columns["item_id"], self.columns[f"{source}_rank"]))
            self.scores[source] = {i: v for i, v in bucket.items() if not math.isnan(ranks[i])}

    def frame(self) -> dict[str, np.ndarray]:
        """Candidate columns for :func:`~hybridrec.features.ranking.feature_matrix`, rows in fused order."""
        if self.columns is None:
            raise RuntimeError("candidates are framed once pooled")
        return self.columns

    def restrict(self, keep: set[str]) -> None:
        """Drop every item not in ``keep`` (excluded, filtered or without a document)."""
        self.items = {i: d for i, d in self.items.items() if i in keep}
        self.scores = {s: {i: v for i, v in b.items() if i in self.items} for s, b in self.scores.items()}
        self.profiles = {i: p for i, p in self.profiles.items() if i in self.items}


def _compact(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as cached: vectors as arrays (a fifth of the memory of float lists, and ready for numpy)."""
    return {k: (np.asarray(v, dtype=np.float64) if k in VECTOR_FIELDS and v else v) for k, v in doc.items()}


class ItemCache:
    """Published item documents by (index, id), least recently used out first.

    A published index is never written again (a retrain publishes a new one), so its documents stay
    valid for as long as they are cached; their ranker profiles are parsed once, on the way in."""

    def __init__(self, store: ServingStore, max_items: int = ITEM_CACHE_SIZE):
        self.store, self.max_items = store, max_items
        self._entries: OrderedDict[tuple[str, str], tuple[dict[str, Any], ItemProfile]] = OrderedDict()
        self._lock = threading.Lock()
        self._warmed: set[str] = set()

    def warm_in_background(self, index: str) -> None:
        """Read a newly served index into the cache once, beside the requests (which fetch what they miss
        meanwhile), so a new run does not cost every request a cache-miss ``_mget`` until it is warm."""
        with self._lock:
            if index in self._warmed:
                return
            self._warmed.add(index)
        threading.Thread(target=self._warm, args=(index,), name=f"warm-{index}", daemon=True).start()

    def fill(self, index: str) -> None:
        """Read an index into the cache now (before a worker serves); failures raise."""
        with self._lock:
            self._warmed.add(index)
        self._read_all(index)

    def _warm(self, index: str) -> None:
        try:
            self._read_all(index)
        except Exception as err:  # noqa: BLE001 - only a warm-up: requests fill the cache on their own
            log.warning("item cache warm-up of %s stopped: %s", index, err)

    def _read_all(self, index: str) -> None:
        start, count = time.perf_counter(), 0
        for batch in self.store.scan_items(index, CACHED_FIELDS, limit=self.max_items):
            self._put(index, {d["_id"]: d["_source"] for d in batch})
            count += len(batch)
        log.info("item cache warmed with %d items of %s in %.1f s", count, index, time.perf_counter() - start)
        # The cache is now most of the heap and lives as long as the index is served: frozen, the
        # collector's full passes skip it (one took 170-570 ms with a warm 20k-item cache, a pause
        # every request in flight would wait out).
        gc.freeze()

    def get(self, index: str, ids: Iterable[str]) -> dict[str, tuple[dict[str, Any], ItemProfile]]:
        """Document and profile of each id the index has (one ``_mget`` for those not cached yet)."""
        found: dict[str, tuple[dict[str, Any], ItemProfile]] = {}
        missing = []
        with self._lock:
            for item_id in dict.fromkeys(ids):
                entry = self._entries.get((index, item_id))
                if entry is None:
                    missing.append(item_id)
                else:
                    self._entries.move_to_end((index, item_id))
                    found[item_id] = entry
        if missing:
            found.update(self._put(index, self.store.get_items(index, missing, CACHED_FIELDS)))
        return found

    def _put(self, index: str, docs: Mapping[str, dict[str, Any]]) -> dict[str, tuple[dict[str, Any], ItemProfile]]:
        compact = {i: _compact(d) for i, d in docs.items()}  # profiles share its arrays: no list → array per request
        entries = {i: (d, item_profile_from_document(d)) for i, d in compact.items()}
        with self._lock:
            for item_id, entry in entries.items():
                self._entries[(index, item_id)] = entry
            while len(self._entries) > self.max_items:
                self._entries.popitem(last=False)
        return entries


Ranked = list[tuple[str, float, str | None]]  # item id, score, region


@dataclass(frozen=True)
class Shared:
    """The sources that are the same for every user of an index."""

    popular: Ranked
    trending: Ranked
    by_topic: dict[str, Ranked]  # topic path → its most popular items, score = popularity


class GlobalLists:
    """Popular, trending and per-topic popular items of each served index, refreshed every ``ttl_s``
    (one ``_msearch``); each request drops its own excluded items locally. ``size`` per list leaves
    room for what a heavy user has already seen. A refresh takes tens of milliseconds: one request
    makes it while the others go on with the lists it replaces, so no request queues behind it."""

    MAX_TOPICS = 10_000  # more than the taxonomy has leaves: every topic gets its list
    MAX_PER_TOPIC = 100  # OpenSearch's default index.max_inner_result_window

    def __init__(self, store: ServingStore, ttl_s: float, size: int):
        self.store, self.ttl_s, self.size = store, ttl_s, size
        self._lists: dict[str, tuple[float, Shared]] = {}
        self._lock = threading.Lock()

    def get(self, index: str) -> Shared:
        fetched = self._lists.get(index)
        if fetched is not None and time.monotonic() - fetched[0] < self.ttl_s:
            return fetched[1]
        if not self._lock.acquire(blocking=fetched is None):
            return fetched[1]  # stale, and another request is refreshing them
        try:  # one refresh; requests that had no lists yet and queued behind it use its result
            fetched = self._lists.get(index)
            now = time.monotonic()
            if fetched is None or now - fetched[0] >= self.ttl_s:
                fetched = (now, self._fetch(index))
                # lists of indices no longer served (an earlier run) stop being refreshed and go
                self._lists = {k: v for k, v in self._lists.items() if now - v[0] < 10 * self.ttl_s}
                self._lists[index] = fetched
        finally:
            self._lock.release()
        return fetched[1]

    def _fetch(self, index: str) -> Shared:
        by_popularity = [{"popularity": {"order": "desc"}}, {"item_id": "asc"}]  # ties as the pool breaks them
        trending_score = "doc['trending'].value * Math.log1p(doc['popularity'].value)"
        fields = {**IDS_ONLY, "docvalue_fields": ["item_id", "region"]}
        per_topic = {"size": min(self.size, self.MAX_PER_TOPIC), "sort": by_popularity, **fields}
        popular, trending, topics = self.store.msearch_responses(index, [
            {"size": self.size, "sort": by_popularity, "query": {"match_all": {}}, **fields},
            {"size": self.size, **BY_SCORE,
             "query": {"script_score": {"query": {"range": {"trending": {"gt": 0}}},
                                        "script": {"source": trending_score}}}, **fields},
            {"size": 0, "aggs": {"topics": {"terms": {"field": "topic_path", "size": self.MAX_TOPICS},
                                            "aggs": {"top": {"top_hits": per_topic}}}}},
        ])

        def region(hit: dict[str, Any]) -> str | None:
            return (hit["fields"].get("region") or [None])[0]

        return Shared(
            popular=[(hit_id(h), formulas.popular_score(float(h["sort"][0])), region(h))
                     for h in popular["hits"]["hits"]],
            trending=[(hit_id(h), float(h["_score"]), region(h)) for h in trending["hits"]["hits"]],
            by_topic={b["key"]: [(hit_id(h), float(h["sort"][0]), region(h)) for h in b["top"]["hits"]["hits"]]
                      for b in topics["aggregations"]["topics"]["buckets"]})


def _keyword_query(request: CandidateRequest) -> dict[str, Any]:
    """Items carrying the interest tags, each matched tag adding its interest weight (a ``constant_score``
    per tag: the score batch computes), plus BM25 over the item text for the user's recent search words."""
    should: list[dict[str, Any]] = [{"constant_score": {"filter": {"term": {"tags": t}}, "boost": w}}
                                    for t, w in sorted(request.interest_tags.items()) if w > 0]
    if request.interest_keywords:
        should.append({"multi_match": {"query": " ".join(request.interest_keywords),
                                       "fields": ["title", "text", "keywords"]}})
    query = {"bool": {"should": should, "minimum_should_match": 1, "filter": list(request.item_filter)}}
    return {"size": request.fetch_size(request.depth), **BY_SCORE, "query": query, **IDS_ONLY}


def _knn(field_name: str, space_type: str, vector: list[float], request: CandidateRequest) -> dict[str, Any]:
    """The nearest items by ``space_type``: exactly (the k-NN plugin's ``knn_score`` script over every
    unseen item, so the list is batch's) or, with ``exact_vectors`` off, by the HNSW graph (approximate:
    the list may miss an item of the exact top; for catalogues too large to scan per request)."""
    size = request.fetch_size(request.depth)
    if request.exact_vectors:
        candidates = {"bool": {"filter": [{"exists": {"field": field_name}}, *request.item_filter],
                               "must_not": [{"ids": {"values": sorted(request.exclude)}}]}}
        script = {"source": "knn_score", "lang": "knn",
                  "params": {"field": field_name, "query_value": vector, "space_type": space_type}}
        return {"size": size, **BY_SCORE, "query": {"script_score": {"query": candidates, "script": script}},
                **IDS_ONLY}
    query: dict[str, Any] = {"vector": vector, "k": size}
    if request.item_filter:
        query["filter"] = {"bool": {"filter": list(request.item_filter)}}
    return {"size": size, "query": {"knn": {field_name: query}}, **IDS_ONLY}


GEO_SCORE = ("(Math.log1p(doc['popularity'].value) + 1.0)"
             " / (1.0 + doc['location'].arcDistance(params.lat, params.lon) / 1000.0 / params.radius_km)")
"""The geo source's score (:func:`hybridrec.features.candidates.geo_score`) in Painless: it orders the ring."""


def build_queries(request: CandidateRequest) -> dict[str, dict[str, Any]]:
    """One search body per per-user source that has something to go on, keyed by a query name.
    Every body returns ids (from doc values) and scores only; documents come from the item cache."""
    queries: dict[str, dict[str, Any]] = {}
    if request.cf_vector:
        queries["als"] = _knn("cf_vector", CF_SPACE, request.cf_vector, request)
    for n, vector in enumerate(request.content_vectors):
        queries[f"content:{n}"] = _knn("content_vector", "cosinesimil", vector, request)
    if request.interest_tags or request.interest_keywords:
        queries["keyword"] = _keyword_query(request)
    if request.surface == "place" and request.location is not None:
        lat, lon = request.location
        ring = {"geo_distance": {"distance": f"{request.radius_km}km", "location": {"lat": lat, "lon": lon}}}
        script = {"source": GEO_SCORE, "params": {"lat": lat, "lon": lon, "radius_km": request.radius_km}}
        queries["geo"] = {"size": request.fetch_size(request.depth), **BY_SCORE,
                          "query": {"script_score": {"query": {"bool": {"filter": [*request.item_filter, ring]}},
                                                     "script": script}}, **IDS_ONLY}
    return queries


def _dot(a: np.ndarray | None, b: np.ndarray | None) -> float:
    return float(np.dot(a, b)) if a is not None and b is not None and len(a) == len(b) else math.nan


def covisit_scores(seed_docs: Iterable[dict[str, Any]], exclude: frozenset[str]) -> dict[str, float]:
    """Sum of the seeds' published neighbour scores per item."""
    totals: dict[str, float] = {}
    for doc in seed_docs:
        for neighbour in doc.get("covisit") or ():
            item_id = neighbour["item_id"]
            if item_id not in exclude:
                totals[item_id] = totals.get(item_id, 0.0) + float(neighbour["score"])
    return totals


def shared_sources(shared: Shared, request: CandidateRequest) -> dict[str, list[tuple[str, float]]]:
    """Popular, trending and (without content vectors) topic-affinity candidates from the shared lists,
    scored from the lists (:func:`gather` re-scores them from the documents)."""
    regions = request.regions

    def kept(ranked: Iterable[tuple[str, float, str | None]]) -> list[tuple[str, float]]:
        found = [(i, s) for i, s, region in ranked if i not in request.exclude and (not regions or region in regions)]
        return sorted(found, key=lambda kv: -kv[1])

    out = {"popular": kept(shared.popular), "trending": kept(shared.trending)}
    leaf_affinity = {t: a for t, a in request.topic_affinity.items() if a > 0 and t in shared.by_topic}
    if not request.content_vectors and leaf_affinity:
        out["content"] = kept((i, formulas.topic_score(a, popularity), region)
                              for t, a in leaf_affinity.items() for i, popularity, region in shared.by_topic[t])
    return out


def _cosine(a: np.ndarray, b: Any) -> float:
    if b is None or len(a) != len(b):
        return math.nan
    b = np.asarray(b, dtype=np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b)) / norms if norms > 0 else math.nan


def _rescored(source: str, doc: dict[str, Any], score: float, request: CandidateRequest,
              user_cf: np.ndarray | None, user_content: list[np.ndarray]) -> float:
    """The source's score of an item from its document (the formulas batch computes), or, for what only
    the request knows (search words), the score OpenSearch gave."""
    popularity = float(doc.get("popularity", 0.0))
    if source == "als":
        return _dot(user_cf, doc.get("cf_vector"))
    if source == "content":
        if user_content:
            return max(_cosine(v, doc.get("content_vector")) for v in user_content)
        return formulas.topic_score(request.topic_affinity.get(doc.get("topic_path", ""), 0.0), popularity)
    if source == "popular":
        return formulas.popular_score(popularity)
    if source == "trending":
        value = formulas.trending_score(float(doc.get("trending", 0.0)), popularity)
        return value if value > 0 else math.nan
    if source == "keyword" and not request.interest_keywords:
        return formulas.keyword_score(request.interest_tags, doc.get("tags") or ())
    return score  # graph and covisit: published scores; keyword with search words: BM25 + tag weights


def gather(store: ServingStore, cache: ItemCache, shared_lists: GlobalLists, request: CandidateRequest) -> Candidates:
    """Every source: one ``_msearch`` for the per-user ones, the shared lists, and the item cache for
    documents; each found item re-scored from its document. Not pooled yet (:meth:`Candidates.pool`)."""
    queries = build_queries(request)
    results = dict(zip(queries, store.msearch(request.index, list(queries.values()))))
    proposed: dict[str, list[tuple[str, float]]] = shared_sources(shared_lists.get(request.index), request)
    for name, hits in results.items():
        proposed.setdefault(name.split(":", 1)[0], []).extend((hit_id(h), float(h["_score"] or 0.0)) for h in hits)
    if request.graph:
        proposed["graph"] = list(request.graph)

    wanted = [i for ranked in proposed.values() for i, _ in ranked if i not in request.exclude]
    entries = cache.get(request.index, wanted + list(request.covisit_seeds))
    if request.covisit_seeds:
        seeds = [entries[i][0] for i in request.covisit_seeds if i in entries]
        proposed["covisit"] = list(covisit_scores(seeds, request.exclude).items())
        entries.update(cache.get(request.index, [i for i, _ in proposed["covisit"] if i not in entries]))

    out = Candidates()
    docs = {i: e[0] for i, e in entries.items()}
    user_cf = np.asarray(request.cf_vector, dtype=np.float64) if request.cf_vector else None
    user_content = [np.asarray(v, dtype=np.float64) for v in request.content_vectors]
    for source, ranked in proposed.items():
        ranked = [(i, s) for i, s in ranked if i in docs and i not in request.exclude]
        if source == "geo":
            out.add("geo", _geo_scores([(i, docs[i]) for i, _ in ranked], request))
        else:
            out.add(source, ((i, _rescored(source, docs[i], s, request, user_cf, user_content), docs[i])
                             for i, s in ranked))
    regions = request.regions
    out.restrict({i for i, d in out.items.items() if not regions or d.get("region") in regions})
    out.profiles = {i: entries[i][1] for i in out.items}
    return out


def _geo_scores(docs: list[tuple[str, dict[str, Any]]], request: CandidateRequest):
    lat, lon = request.location  # type: ignore[misc]
    located = [(i, d) for i, d in docs if d.get("location")]
    if not located:
        return []
    item_lat = np.array([d["location"]["lat"] for _, d in located])
    item_lon = np.array([d["location"]["lon"] for _, d in located])
    distance = haversine_km(np.full(len(located), lat), np.full(len(located), lon), item_lat, item_lon)
    popularity = np.array([float(d.get("popularity", 0.0)) for _, d in located])
    scores = formulas.geo_score(popularity, distance, request.radius_km)
    return [(i, float(s), d) for (i, d), s, km in zip(located, scores, distance) if km <= request.radius_km]
