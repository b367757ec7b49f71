"""Ranking features: computed here once, for the nightly batch and for each feed request alike.

Both callers hand :func:`feature_matrix` (batch through :func:`feature_frame`) the same inputs — one
row per (user, candidate) with the candidate sources' scores and ranks, plus a :class:`UserProfile`
and an :class:`ItemProfile` per item — so the offline features the ranker was trained on are exactly
the ones it sees online (checked by the parity test). Profiles are plain data: batch builds them
from Iceberg tables, serving reads them from the published OpenSearch documents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat

import numpy as np
import pandas as pd

SOURCES = ("als", "graph", "content", "covisit", "popular", "geo", "keyword", "trending")
"""Every candidate source, in a fixed order: each gets a score and a rank feature, offline and online alike
(the pool and the scores are defined once, in :mod:`hybridrec.features.candidates`)."""

FEATURE_NAMES = (
    *(f"{s}_score" for s in SOURCES),
    *(f"{s}_rank" for s in SOURCES),
    "n_sources",
    "topic_affinity",
    "parent_topic_affinity",
    "topic_skip_share",
    "tag_overlap",
    "content_similarity",
    "item_popularity",
    "item_trending",
    "item_age_days",
    "distance_km",
    "user_activity",
    "user_items",
)


def topic_parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else path


@dataclass(frozen=True)
class UserProfile:
    """What the ranker knows about a user: long-term tastes and where they are."""

    user_id: str
    topic_affinity: Mapping[str, float] = field(default_factory=dict)
    """Share of the user's positive evidence per topic path (leaf and parent both present)."""
    topic_skips: Mapping[str, float] = field(default_factory=dict)
    """Share of the user's skips per topic path."""
    interest_tags: Mapping[str, float] = field(default_factory=dict)
    """Taxonomy tags of the user's interests (engaged items' tags, interest queries), weights sum to 1."""
    activity: float = 0.0
    items: int = 0
    lat: float | None = None
    lon: float | None = None
    content_vector: Sequence[float] | None = None


@dataclass(frozen=True)
class ItemProfile:
    item_id: str
    topic_path: str
    tags: Sequence[str] = ()
    popularity: float = 0.0
    trending: float = 0.0
    created_at: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    content_vector: Sequence[float] | None = None


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=float)) for a in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 6371.0 * 2 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


CandidateColumns = Mapping[str, Sequence]
"""Candidate rows by column: a DataFrame (batch) or a dict of arrays (serving, which skips pandas)."""


def _content_similarity(user_rows: Sequence[UserProfile], item_rows: Sequence[ItemProfile],
                        user_codes: np.ndarray, item_codes: np.ndarray) -> np.ndarray:
    """Cosine of each row's user and item content vectors; NaN where either is missing, zero or of
    another dimension. One matrix-vector product per distinct user, and no temporary of the matrix's
    size beyond the matrix itself: at serving's row counts allocating those cost more than the products."""
    similarity = np.full(len(user_codes), np.nan)
    vectors = [*(u.content_vector for u in user_rows), *(i.content_vector for i in item_rows)]
    dim = next((len(v) for v in vectors if v is not None and len(v)), 0)
    if not dim:
        return similarity
    item_usable = np.array([i.content_vector is not None and len(i.content_vector) == dim for i in item_rows],
                           dtype=bool)
    order = np.argsort(user_codes, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(user_codes[order])) + 1):
        user_vector = user_rows[user_codes[rows[0]]].content_vector if len(rows) else None
        if user_vector is None or len(user_vector) != dim:
            continue
        user_vector = np.asarray(user_vector, dtype=float)
        user_norm = float(np.linalg.norm(user_vector))
        rows = rows[item_usable[item_codes[rows]]]
        if not user_norm or not len(rows):
            continue
        matrix = np.stack([item_rows[i].content_vector for i in item_codes[rows]]).astype(float, copy=False)
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix)) * user_norm
        with np.errstate(invalid="ignore", divide="ignore"):
            similarity[rows] = np.where(norms > 0, (matrix @ user_vector) / norms, np.nan)
    return similarity


def _per_topic(user_rows: Sequence[UserProfile], user_codes: np.ndarray, topics: Sequence[str],
               topic_codes: np.ndarray, share: Callable[[UserProfile, str], float]) -> np.ndarray:
    """``share(user, topic)`` per row, looked up once per distinct (user, topic): candidates share few topics."""
    pairs, inverse = np.unique(user_codes * len(topics) + topic_codes, return_inverse=True)
    values = np.array([share(user_rows[p // len(topics)], topics[p % len(topics)]) for p in pairs], dtype=float)
    return values[inverse.reshape(-1)]


def feature_matrix(candidates: CandidateColumns, users: Mapping[str, UserProfile], items: Mapping[str, ItemProfile],
                   now: datetime, location: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """Features for ``candidates`` (columns ``user_id``, ``item_id`` and ``<source>_score``/``<source>_rank``
    for the sources that proposed each item; missing sources are NaN). ``location`` overrides a user's
    home with where they are now (the request's lat/lon). One row per candidate, :data:`FEATURE_NAMES`
    columns in order.

    Profiles are read once per distinct user and item (codes index them), so the cost is a few numpy
    operations per column whether there is one user (a request) or thousands (a batch)."""
    user_codes, user_ids = pd.factorize(np.asarray(candidates["user_id"], dtype=object))
    item_codes, item_ids = pd.factorize(np.asarray(candidates["item_id"], dtype=object))
    n = len(user_codes)
    user_rows = [users.get(u) or UserProfile(u) for u in user_ids]
    item_rows = [items.get(i) or ItemProfile(i, "") for i in item_ids]
    out = np.empty((n, len(FEATURE_NAMES)))
    column = {name: out[:, k] for k, name in enumerate(FEATURE_NAMES)}  # views: writing one fills ``out``

    for source in SOURCES:
        for kind in ("score", "rank"):
            name = f"{source}_{kind}"
            column[name][:] = np.asarray(candidates[name], dtype=float) if name in candidates else np.nan
    column["n_sources"][:] = sum(~np.isnan(column[f"{s}_rank"]) for s in SOURCES)

    topic_codes, topics = pd.factorize(np.array([i.topic_path for i in item_rows], dtype=object))
    parent_codes, parents = pd.factorize(np.array([topic_parent(t) for t in topics], dtype=object))
    row_topics, row_parents = topic_codes[item_codes], parent_codes[topic_codes[item_codes]]
    column["topic_affinity"][:] = _per_topic(user_rows, user_codes, topics, row_topics,
                                             lambda u, t: u.topic_affinity.get(t, 0.0))
    column["parent_topic_affinity"][:] = _per_topic(user_rows, user_codes, parents, row_parents,
                                                    lambda u, t: u.topic_affinity.get(t, 0.0))
    column["topic_skip_share"][:] = _per_topic(user_rows, user_codes, topics, row_topics,
                                               lambda u, t: u.topic_skips.get(t, 0.0))
    column["tag_overlap"][:] = [sum(map(user_rows[u].interest_tags.get, item_rows[i].tags, repeat(0.0)))
                                for u, i in zip(user_codes.tolist(), item_codes.tolist())]
    column["content_similarity"][:] = _content_similarity(user_rows, item_rows, user_codes, item_codes)

    popularity = np.log1p(np.array([i.popularity for i in item_rows], dtype=float))
    trending = np.array([i.trending for i in item_rows], dtype=float)
    age_days = np.array([(now - i.created_at).total_seconds() / 86400 if i.created_at else np.nan
                         for i in item_rows], dtype=float)
    column["item_popularity"][:], column["item_trending"][:] = popularity[item_codes], trending[item_codes]
    column["item_age_days"][:] = age_days[item_codes]

    here = [(location or {}).get(u.user_id, (u.lat, u.lon)) for u in user_rows]
    user_lat, user_lon = (np.array([np.nan if h[k] is None else h[k] for h in here], dtype=float) for k in (0, 1))
    item_lat = np.array([np.nan if i.lat is None else i.lat for i in item_rows], dtype=float)
    item_lon = np.array([np.nan if i.lon is None else i.lon for i in item_rows], dtype=float)
    column["distance_km"][:] = haversine_km(user_lat[user_codes], user_lon[user_codes], item_lat[item_codes],
                                            item_lon[item_codes])
    column["user_activity"][:] = np.log1p(np.array([u.activity for u in user_rows], dtype=float))[user_codes]
    column["user_items"][:] = np.array([float(u.items) for u in user_rows])[user_codes]
    return out


def feature_frame(candidates: pd.DataFrame, users: Mapping[str, UserProfile], items: Mapping[str, ItemProfile],
                  now: datetime, location: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """:func:`feature_matrix` as a frame named by :data:`FEATURE_NAMES`, on the candidates' index."""
    return pd.DataFrame(feature_matrix(candidates, users, items, now, location), columns=list(FEATURE_NAMES),
                        index=candidates.index)
