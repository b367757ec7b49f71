"""Candidate generation: several sources per surface, each tagged with its name.

A source scores every item for a batch of users (dense ``[users, items]``, ``-inf`` where it has no
opinion); :func:`top_candidates` keeps each source's top ``k`` unseen items and merges them into one
row per (user, item) with ``<source>_score`` / ``<source>_rank`` columns, the input of the ranking
features. Id spaces are explicit: rows of every matrix are ``user_index``, columns ``item_index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hybridrec.features.ranking import haversine_km
from hybridrec.models.collaborative import CollaborativeModel, mask_items, top_k


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
    """A trained CF model (ALS, graph filter) as a candidate source."""

    name: str
    model: CollaborativeModel

    def score(self, user_index: np.ndarray) -> np.ndarray:
        return self.model.score(user_index).astype(np.float32)


class CovisitationSource:
    """Items engaged with by the same users as the user's items (item-item co-occurrence, cosine-normalised)."""

    name = "covisit"

    def __init__(self, data: SurfaceData):
        binary = (data.user_items > 0).astype(np.float32).tocsr()
        co = (binary.T @ binary).tocsr()
        co.setdiag(0)
        co.eliminate_zeros()
        norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel()) + 1e-9
        self.similarity = sp.diags(1 / norms) @ co @ sp.diags(1 / norms)
        self.binary = binary

    def score(self, user_index: np.ndarray) -> np.ndarray:
        scores = np.asarray((self.binary[user_index] @ self.similarity).todense(), dtype=np.float32)
        scores[scores <= 0] = -np.inf
        return scores

    def neighbours(self, k: int) -> list[list[tuple[int, float]]]:
        """Top-``k`` co-visited items per item, published so serving can expand a user's recent items."""
        result = []
        for row in range(self.similarity.shape[0]):
            start, end = self.similarity.indptr[row], self.similarity.indptr[row + 1]
            cols, vals = self.similarity.indices[start:end], self.similarity.data[start:end]
            order = np.argsort(-vals)[:k]
            result.append([(int(cols[i]), float(vals[i])) for i in order])
        return result


class ContentSource:
    """Items close to the user's content: embedding similarity when embeddings exist, else the
    user's topic affinity times the item's popularity (item metadata, not ground truth)."""

    name = "content"

    def __init__(self, data: SurfaceData):
        self.data = data
        topics = sorted(set(data.item_topic))
        self.topic_index = {t: i for i, t in enumerate(topics)}
        columns = np.array([self.topic_index[t] for t in data.item_topic])
        weight = np.log1p(data.item_popularity).astype(np.float32) + 1e-3
        self.topic_items = sp.csr_matrix((weight, (columns, np.arange(len(columns)))),
                                         shape=(len(topics), len(columns)))

    def score(self, user_index: np.ndarray) -> np.ndarray:
        if self.data.user_vectors is not None and self.data.item_vectors is not None:
            scores = self.data.user_vectors[user_index] @ self.data.item_vectors.T
            return scores.astype(np.float32)
        affinity = np.zeros((len(user_index), len(self.topic_index)), dtype=np.float32)
        for row, user in enumerate(user_index):
            for topic, share in self.data.user_topic_affinity[user].items():
                column = self.topic_index.get(topic)
                if column is not None:
                    affinity[row, column] = share
        scores = np.asarray((sp.csr_matrix(affinity) @ self.topic_items).todense(), dtype=np.float32)
        scores[scores <= 0] = -np.inf
        return scores


class PopularSource:
    """The most engaged-with items: the baseline and the cold-start fallback."""

    name = "popular"

    def __init__(self, data: SurfaceData):
        self.popularity = np.log1p(data.item_popularity).astype(np.float32)

    def score(self, user_index: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(user_index), len(self.popularity))).copy()


class GeoSource:
    """Popular places near the user (home location here; the request's location at serving time)."""

    name = "geo"

    def __init__(self, data: SurfaceData, radius_km: float):
        if data.item_lat is None or data.user_lat is None:
            raise ValueError("geo candidates need item and user coordinates")
        self.data, self.radius_km = data, radius_km
        self.popularity = np.log1p(data.item_popularity).astype(np.float32)

    def score(self, user_index: np.ndarray) -> np.ndarray:
        d = self.data
        distance = haversine_km(d.user_lat[user_index][:, None], d.user_lon[user_index][:, None],
                                d.item_lat[None, :], d.item_lon[None, :])
        scores = (self.popularity[None, :] + 1.0) / (1.0 + distance / self.radius_km)
        scores[~(distance <= self.radius_km)] = -np.inf
        return scores.astype(np.float32)


def top_candidates(sources: Sequence[CandidateSource], data: SurfaceData, user_index: np.ndarray,
                   k: int) -> pd.DataFrame:
    """One row per (user, item) proposed by any source, with each source's score and rank (1-based)."""
    seen = data.seen[user_index]
    parts = []
    for source in sources:
        scores = source.score(user_index)
        mask_items(scores, seen)
        items = top_k(scores, k)
        picked = np.take_along_axis(scores, items, axis=1)
        rows, ranks = np.nonzero(np.isfinite(picked))
        parts.append(pd.DataFrame({
            "user_index": user_index[rows], "item_index": items[rows, ranks],
            f"{source.name}_score": picked[rows, ranks], f"{source.name}_rank": ranks + 1,
        }).set_index(["user_index", "item_index"]))
    merged = pd.concat(parts, axis=1).reset_index()
    merged["user_id"] = data.user_ids[merged["user_index"].to_numpy()]
    merged["item_id"] = data.item_ids[merged["item_index"].to_numpy()]
    return merged
