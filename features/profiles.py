"""User and item profiles from the lake's interaction matrix: the batch side of the ranking features.

Serving never recomputes these: the nightly run publishes them into the OpenSearch user and item
documents, and :mod:`hybridrec.features.ranking` reads the same fields either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pandas as pd

from hybridrec.features.ranking import ItemProfile, UserProfile, topic_parent



def _with_parents(frame: pd.DataFrame, topic_column: str) -> pd.DataFrame:
    """Rows repeated for the topic's parent, so affinity exists at both levels (soccer and sports)."""
    parents = frame.assign(**{topic_column: frame[topic_column].map(topic_parent)})
    parents = parents[parents[topic_column] != frame[topic_column]]
    return pd.concat([frame, parents], ignore_index=True)


def _share_by_topic(evidence: pd.DataFrame, value: str) -> dict[str, dict[str, float]]:
    totals = evidence.groupby("user_id")[value].transform("sum")
    leaf_totals = evidence.assign(share=evidence[value] / totals)
    expanded = _with_parents(leaf_totals, "topic_path")
    shares = expanded.groupby(["user_id", "topic_path"])["share"].sum()
    result: dict[str, dict[str, float]] = {}
    for (user_id, topic), share in shares.items():
        result.setdefault(user_id, {})[topic] = float(share)
    return result


def item_profiles(items: pd.DataFrame, interactions: pd.DataFrame, as_of: datetime,
                  item_tags: Mapping[str, Sequence[str]] | None = None,
                  item_vectors: Mapping[str, Sequence[float]] | None = None, *,
                  trending_days: float) -> dict[str, ItemProfile]:
    """``items``: item_id, topic_path, created_at, lat, lon. ``interactions``: the retrain matrix rows.
    ``trending_days``: the window of the trending feature (``retrain.trending_days``)."""
    positive = interactions[interactions["confidence"] > 0]
    popularity = positive.groupby("item_id")["confidence"].sum()
    engaged = positive.groupby("item_id").size()
    recent = positive[positive["last_ts"] >= as_of - timedelta(days=trending_days)].groupby("item_id").size()
    trending = (recent / engaged).fillna(0.0)
    item_tags, item_vectors = item_tags or {}, item_vectors or {}
    profiles = {}
    for row in items.itertuples(index=False):
        tags = tuple(item_tags.get(row.item_id, ())) or (row.topic_path, topic_parent(row.topic_path))
        profiles[row.item_id] = ItemProfile(
            item_id=row.item_id, topic_path=row.topic_path, tags=tags,
            popularity=float(popularity.get(row.item_id, 0.0)), trending=float(trending.get(row.item_id, 0.0)),
            created_at=row.created_at.to_pydatetime() if pd.notna(row.created_at) else None,
            lat=None if pd.isna(row.lat) else float(row.lat), lon=None if pd.isna(row.lon) else float(row.lon),
            content_vector=item_vectors.get(row.item_id))
    return profiles


def user_profiles(users: pd.DataFrame, interactions: pd.DataFrame, items: pd.DataFrame,
                  query_tags: Mapping[str, Mapping[str, float]] | None = None,
                  user_vectors: Mapping[str, Sequence[float]] | None = None) -> dict[str, UserProfile]:
    """``users``: user_id, home_lat, home_lon. Interest tags blend engaged topics with interest-query tags."""
    joined = interactions.merge(items[["item_id", "topic_path"]], on="item_id", how="inner")
    positive = joined[joined["confidence"] > 0]
    skips = joined[joined["confidence"] < 0].assign(confidence=lambda f: -f["confidence"])
    affinity = _share_by_topic(positive, "confidence")
    skip_share = _share_by_topic(skips, "confidence")
    activity = joined.groupby("user_id")["events"].sum()
    n_items = positive.groupby("user_id").size()
    query_tags, user_vectors = query_tags or {}, user_vectors or {}
    profiles = {}
    for row in users.itertuples(index=False):
        topics = affinity.get(row.user_id, {})
        interests = _blend(topics, query_tags.get(row.user_id, {}))
        profiles[row.user_id] = UserProfile(
            user_id=row.user_id, topic_affinity=topics, topic_skips=skip_share.get(row.user_id, {}),
            interest_tags=interests, activity=float(activity.get(row.user_id, 0)),
            items=int(n_items.get(row.user_id, 0)),
            lat=None if pd.isna(row.home_lat) else float(row.home_lat),
            lon=None if pd.isna(row.home_lon) else float(row.home_lon),
            content_vector=user_vectors.get(row.user_id))
    return profiles


def _blend(topics: Mapping[str, float], queries: Mapping[str, float]) -> dict[str, float]:
    """Equal parts engaged topics and interest-query tags (whichever exist), normalised to sum 1."""
    parts = [p for p in (topics, queries) if p]
    blended: dict[str, float] = {}
    for part in parts:
        total = sum(part.values()) or 1.0
        for tag, weight in part.items():
            blended[tag] = blended.get(tag, 0.0) + weight / total / len(parts)
    return blended

