"""Candidate generation in batch: every source scores every item exactly, for a batch of users.

A source scores the catalogue for a batch of users (dense ``[users, items]``, ``-inf`` where it has no
opinion); :func:`top_candidates` masks seen items, keeps each source's best unseen items and hands them
to :func:`hybridrec.features.candidates.pool`, the definition of the pool and of the
``<source>_score``/``<source>_rank`` columns that serving uses too. Each score is the formula of
:mod:`hybridrec.features.candidates` that serving computes from the published documents. Id spaces are
explicit: rows of every matrix are ``user_index``, columns ``item_index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hybridrec.config import CandidateSettings
from hybridrec.features import candidates as shared
from hybridrec.features.ranking import haversine_km
from hybridrec.models.collaborative import ALSModel, CollaborativeModel, mask_items


@dataclass
class SurfaceData:
    """One surface's id maps and matrices, the shared input of every source."""

    surface: str
    user_ids: np.ndarray                    # user_index -> user_id
    item_ids: np.ndarray                    # item_index -> item_id
    user_items: sp.csr_matrix               # positive confidence, users x items
    seen: sp.csr_matrix                     # any interaction (incl. skips): never re-proposed
    item_popularity: np.ndarray             # per item_index
    item_topic: np.ndarray                  # per item_index, topic/category path
    user_topic_affinity: list[dict[str, float]]  # per user_index
    item_lat: np.ndarray | None = None
    item_lon: np.ndarray | None = None
    user_lat: np.ndarray | None = None
    user_lon: np.ndarray | None = None
    user_vectors: np.ndarray | None = None  # content embeddings, L2-normalised, per user_index
    item_vectors: np.ndarray | None = None  # per item_index
    item_trending: np.ndarray | None = None  # per item_index, share of engagement in the last days
    item_tags: list[Sequence[str]] | None = None  # per item_index, the published tags
    user_interest_tags: list[dict[str, float]] | None = None  # per user_index, the published interest tags
    user_index: dict[str, int] = field(init=False)
    item_index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        n_users, n_items = len(self.user_ids), len(self.item_ids)
        for name in ("user_items", "seen"):
            if getattr(self, name).shape != (n_users, n_items):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected (users={n_users}, items={n_items})")
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.item_index = {it: i for i, it in enumerate(self.item_ids)}


class CandidateSource(Protocol):
    name: str

    def score(self, user_index: np.ndarray) -> np.ndarray:
        """Dense scores ``[len(user_index), n_items]``; ``-inf`` where the source proposes nothing."""


@dataclass
class CollaborativeSource:
    """A trained CF model (the graph filter) as a candidate source: its scores as they are published."""

    name: str
    model: CollaborativeModel

    def score(self, user_index: np.ndarray) -> np.ndarray:
        return self.model.score(user_index).astype(np.float64)


@dataclass
class FactorSource:
    """Matrix-factorisation candidates by inner product of user and item factors, in float64: what serving
    recomputes from the published ``cf_vector`` fields, whose k-NN index retrieves by inner product too."""

    name: str
    user_factors: np.ndarray
    item_factors: np.ndarray

    def score(self, user_index: np.ndarray) -> np.ndarray:
        scores = self.user_factors[user_index].astype(np.float64) @ self.item_factors.T.astype(np.float64)
        scores[:, ~self.item_factors.any(axis=1)] = -np.inf  # an all-zero vector is not published (nor found)
        scores[~self.user_factors[user_index].any(axis=1)] = -np.inf
        return scores


def neighbour_matrix(similarity: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's ``k`` largest entries (ties by column): the co-visited items published per item."""
    rows, cols, vals = [], [], []
    for row in range(similarity.shape[0]):
        start, end = similarity.indptr[row], similarity.indptr[row + 1]
        c, v = similarity.indices[start:end], similarity.data[start:end]
        order = np.lexsort((c, -v))[:k]
        rows.append(np.full(len(order), row)), cols.append(c[order]), vals.append(v[order])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=similarity.shape)


class CovisitationSource:
    """Items engaged with by the same users as the user's items (item-item co-occurrence, cosine-normalised):
    the sum over the user's :func:`~hybridrec.features.candidates.covisit_seeds` of each seed's published
    neighbours' similarity, as serving sums them from the item documents."""

    name = "covisit"

    def __init__(self, data: SurfaceData, neighbours: int, seed_items: int):
        binary = (data.user_items > 0).astype(np.float64).tocsr()
        co = (binary.T @ binary).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel()) + 1e-9
        self.similarity = neighbour_matrix((sp.diags(1 / norms) @ co @ sp.diags(1 / norms)).tocsr(), neighbours)
        self.seeds = seed_matrix(data, seed_items)

    def score(self, user_index: np.ndarray) -> np.ndarray:
        scores = np.asarray((self.seeds[user_index] @ self.similarity).todense(), dtype=np.float64)
        scores[scores <= 0] = -np.inf
        return scores

    def neighbours(self) -> list[list[tuple[int, float]]]:
        """The co-visited items of every item, best first, published so serving can expand a user's seeds."""
        result = []
        for row in range(self.similarity.shape[0]):
            start, end = self.similarity.indptr[row], self.similarity.indptr[row + 1]
            cols, vals = self.similarity.indices[start:end], self.similarity.data[start:end]
            order = np.lexsort((cols, -vals))
            result.append([(int(cols[i]), float(vals[i])) for i in order])
        return result


def engaged(data: SurfaceData, user: int) -> dict[str, float]:
    """A user's engaged items (positive confidence) by id."""
    start, end = data.user_items.indptr[user], data.user_items.indptr[user + 1]
    return {data.item_ids[j]: float(v) for j, v in zip(data.user_items.indices[start:end],
                                                       data.user_items.data[start:end]) if v > 0}


def seed_matrix(data: SurfaceData, limit: int) -> sp.csr_matrix:
    """Users x items, 1 where the item is one of the user's co-visitation seeds (strongest engaged, ties by id)."""
    rows, cols = [], []
    for user in range(data.user_items.shape[0]):
        seeds = [data.item_index[i] for i in shared.covisit_seeds(engaged(data, user), limit)]
        rows += [user] * len(seeds)
        cols += seeds
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=data.user_items.shape)


class ContentSource:
    """Items close to the user's content: cosine of the content vectors for users who have one (items
    without a vector are not proposed), else the user's topic affinity times the item's popularity."""

    name = "content"

    def __init__(self, data: SurfaceData):
        self.data = data
        topics = sorted(set(data.item_topic))
        self.topic_index = {t: i for i, t in enumerate(topics)}
        columns = np.array([self.topic_index[t] for t in data.item_topic])
        weight = shared.topic_score(1.0, data.item_popularity.astype(np.float64))
        self.topic_items = sp.csr_matrix((weight, (columns, np.arange(len(columns)))),
                                         shape=(len(topics), len(columns)))
        self.item_vectors = self.item_norms = None
        if data.user_vectors is not None and data.item_vectors is not None:
            self.item_vectors = data.item_vectors.astype(np.float64)
            self.item_norms = np.linalg.norm(self.item_vectors, axis=1)

    def score(self, user_index: np.ndarray) -> np.ndarray:
        affinity = np.zeros((len(user_index), len(self.topic_index)), dtype=np.float64)
        for row, user in enumerate(user_index):
            for topic, share in self.data.user_topic_affinity[user].items():
                column = self.topic_index.get(topic)
                if column is not None and share > 0:
                    affinity[row, column] = share
        scores = np.asarray((sp.csr_matrix(affinity) @ self.topic_items).todense(), dtype=np.float64)
        scores[scores <= 0] = -np.inf
        if self.item_vectors is not None:
            users = self.data.user_vectors[user_index].astype(np.float64)
            user_norms = np.linalg.norm(users, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                cosine = (users @ self.item_vectors.T) / np.outer(user_norms, self.item_norms)
            cosine[:, self.item_norms == 0] = -np.inf
            has_vector = user_norms > 0
            scores[has_vector] = cosine[has_vector]
        return scores


class PopularSource:
    """The most engaged-with items: the baseline and the cold-start fallback."""

    name = "popular"

    def __init__(self, data: SurfaceData):
        self.popularity = shared.popular_score(data.item_popularity.astype(np.float64))

    def score(self, user_index: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(user_index), len(self.popularity))).copy()


class TrendingSource:
    """Items whose engagement is recent, weighted by their engagement (only those with recent engagement)."""

    name = "trending"

    def __init__(self, data: SurfaceData):
        if data.item_trending is None:
            raise ValueError("trending candidates need the items' trending shares")
        score = shared.trending_score(data.item_trending.astype(np.float64), data.item_popularity.astype(np.float64))
        self.scores = np.where(score > 0, score, -np.inf)

    def score(self, user_index: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.scores, (len(user_index), len(self.scores))).copy()


class KeywordSource:
    """Items carrying the user's interest tags: the sum of the interest weights of the item's tags
    (:func:`~hybridrec.features.candidates.keyword_score`), over the ``limit`` strongest published tags."""

    name = "keyword"

    def __init__(self, data: SurfaceData, limit: int):
        if data.item_tags is None or data.user_interest_tags is None:
            raise ValueError("keyword candidates need item tags and users' interest tags")
        self.data, self.limit = data, limit
        tags = sorted({t for item in data.item_tags for t in item})
        self.tag_index = {t: i for i, t in enumerate(tags)}
        pairs = sorted({(self.tag_index[t], j) for j, item in enumerate(data.item_tags) for t in item})
        rows, cols = (np.array([p[k] for p in pairs], dtype=np.int64) for k in (0, 1))
        self.tag_items = sp.csr_matrix((np.ones(len(pairs)), (rows, cols)), shape=(len(tags), len(data.item_tags)))

    def score(self, user_index: np.ndarray) -> np.ndarray:
        weights = np.zeros((len(user_index), len(self.tag_index)), dtype=np.float64)
        for row, user in enumerate(user_index):
            for tag, weight in shared.interest_tags(self.data.user_interest_tags[user], {}, self.limit).items():
                if tag in self.tag_index:
                    weights[row, self.tag_index[tag]] = weight
        scores = np.asarray((sp.csr_matrix(weights) @ self.tag_items).todense(), dtype=np.float64)
        scores[scores <= 0] = -np.inf
        return scores


class GeoSource:
    """Popular places near the user (home location here; the request's location at serving time)."""

    name = "geo"

    def __init__(self, data: SurfaceData, radius_km: float):
        if data.item_lat is None or data.user_lat is None:
            raise ValueError("geo candidates need item and user coordinates")
        self.data, self.radius_km = data, radius_km
        self.popularity = data.item_popularity.astype(np.float64)

    def score(self, user_index: np.ndarray) -> np.ndarray:
        d = self.data
        distance = haversine_km(d.user_lat[user_index][:, None], d.user_lon[user_index][:, None],
                                d.item_lat[None, :], d.item_lon[None, :])
        scores = shared.geo_score(self.popularity[None, :], distance, self.radius_km)
        scores[~(distance <= self.radius_km)] = -np.inf
        return scores


def surface_sources(data: SurfaceData, als: ALSModel | None, graph: CollaborativeModel | None,
                    covisit: CovisitationSource, cfg: CandidateSettings) -> list[CandidateSource]:
    """Every source of the surface, as serving has them (geo only for places); a CF source whose model is
    None (dropped by the model selection) is not computed, so its features are NaN as in serving."""
    sources: list[CandidateSource] = []
    if als is not None:
        sources.append(FactorSource("als", als.user_factors, als.item_factors))
    if graph is not None:
        sources.append(CollaborativeSource("graph", graph))
    sources += [ContentSource(data), covisit, PopularSource(data), KeywordSource(data, cfg.interest_tags),
                TrendingSource(data)]
    if data.surface == "place":
        sources.append(GeoSource(data, cfg.geo_radius_km))
    return sources


def _contenders(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every finite score that can make a row's top ``k``: the ``k`` best and any tied
    with the ``k``-th (the pool breaks those ties by item id)."""
    k = min(k, scores.shape[1])
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    tolerance = 10.0 ** -shared.TIE_DECIMALS
    return np.nonzero(np.isfinite(scores) & (scores >= (kth - tolerance)[:, None]))


def top_candidates(sources: Sequence[CandidateSource], data: SurfaceData, user_index: np.ndarray,
                   depth: int, pool_size: int) -> pd.DataFrame:
    """The pool of ``user_index``'s users (:func:`hybridrec.features.candidates.pool`): one row per (user,
    item) with ``user_index``, ``item_index``, ids, ``fused`` and every source's score and rank."""
    seen = data.seen[user_index]
    users, names, items, values = [], [], [], []
    for source in sources:
        scores = source.score(user_index)
        mask_items(scores, seen)
        rows, cols = _contenders(scores, depth)
        users.append(data.user_ids[user_index[rows]]), items.append(data.item_ids[cols])
        values.append(scores[rows, cols]), names.append(np.full(len(rows), source.name, dtype=object))
    columns = shared.pool(np.concatenate(users), np.concatenate(names), np.concatenate(items),
                          np.concatenate(values), depth, pool_size)
    frame = pd.DataFrame(columns)
    frame.insert(0, "user_index", frame["user_id"].map(data.user_index).astype(np.int64))
    frame.insert(1, "item_index", frame["item_id"].map(data.item_index).astype(np.int64))
    return frame
