"""Ranking features: computed here once, for the nightly batch and for each feed request alike.

Both callers hand :func:`feature_frame` the same inputs — one row per (user, candidate) with the
candidate sources' scores and ranks, plus a :class:`UserProfile` and an :class:`ItemProfile` per
item — so the offline features the ranker was trained on are exactly the ones it sees online
(checked by the parity test). Profiles are plain data: batch builds them from Iceberg tables,
serving reads them from the published OpenSearch documents.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

SOURCES = ("als", "graph", "content", "covisit", "popular", "geo")
"""Every candidate source, in a fixed order: each gets a score and a rank feature."""

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


def _cosine(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    if a is None or b is None or len(a) == 0 or len(b) == 0:
        return math.nan
    va, vb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    norm = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return float(va @ vb / norm) if norm else math.nan


def feature_frame(candidates: pd.DataFrame, users: Mapping[str, UserProfile], items: Mapping[str, ItemProfile],
                  now: datetime, location: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """Features for ``candidates`` (columns ``user_id``, ``item_id`` and ``<source>_score``/``<source>_rank``
    for the sources that proposed each item; missing sources are NaN). ``location`` overrides a user's
    home with where they are now (the request's lat/lon). Returns :data:`FEATURE_NAMES` columns in order.
    """
    # Columns are gathered in a dict and framed once: assigning them one by one into a DataFrame
    # costs more than computing them at serving's row counts.
    out: dict[str, np.ndarray] = {}
    for source in SOURCES:
        for kind in ("score", "rank"):
            column = f"{source}_{kind}"
            out[column] = (candidates[column].to_numpy(dtype=float) if column in candidates
                           else np.full(len(candidates), np.nan))
    out["n_sources"] = sum((~np.isnan(out[f"{s}_rank"])).astype(float) for s in SOURCES)

    user_ids, item_ids = candidates["user_id"].to_numpy(), candidates["item_id"].to_numpy()
    user_rows = [users.get(u) or UserProfile(u) for u in user_ids]
    item_rows = [items.get(i) or ItemProfile(i, "") for i in item_ids]
    pairs = list(zip(user_rows, item_rows))
    out["topic_affinity"] = np.array([u.topic_affinity.get(i.topic_path, 0.0) for u, i in pairs], dtype=float)
    out["parent_topic_affinity"] = np.array([u.topic_affinity.get(topic_parent(i.topic_path), 0.0) for u, i in pairs],
                                            dtype=float)
    out["topic_skip_share"] = np.array([u.topic_skips.get(i.topic_path, 0.0) for u, i in pairs], dtype=float)
    out["tag_overlap"] = np.array([sum(u.interest_tags.get(t, 0.0) for t in i.tags) for u, i in pairs], dtype=float)
    out["content_similarity"] = np.array([_cosine(u.content_vector, i.content_vector) for u, i in pairs], dtype=float)
    out["item_popularity"] = np.log1p(np.array([i.popularity for i in item_rows], dtype=float))
    out["item_trending"] = np.array([i.trending for i in item_rows], dtype=float)
    out["item_age_days"] = np.array([(now - i.created_at).total_seconds() / 86400 if i.created_at else np.nan
                                     for i in item_rows], dtype=float)

    here = [(location or {}).get(u.user_id, (u.lat, u.lon)) for u in user_rows]
    user_lat = np.array([np.nan if h[0] is None else h[0] for h in here], dtype=float)
    user_lon = np.array([np.nan if h[1] is None else h[1] for h in here], dtype=float)
    item_lat = np.array([np.nan if i.lat is None else i.lat for i in item_rows], dtype=float)
    item_lon = np.array([np.nan if i.lon is None else i.lon for i in item_rows], dtype=float)
    out["distance_km"] = haversine_km(user_lat, user_lon, item_lat, item_lon)
    out["user_activity"] = np.log1p(np.array([u.activity for u in user_rows], dtype=float))
    out["user_items"] = np.array([float(u.items) for u in user_rows], dtype=float)
    return pd.DataFrame({name: out[name] for name in FEATURE_NAMES}, index=candidates.index)
