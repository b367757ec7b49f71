"""The published OpenSearch documents of items and users, in both directions.

The nightly run writes profiles into documents and serving reads them back into the same
:class:`ItemProfile`/:class:`UserProfile` objects, so both sides compute features from identical
inputs. Field names live here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from hybridrec.features.ranking import ItemProfile, UserProfile
from hybridrec.search import knn_vector_field


CF_SPACE = "innerproduct"
"""The ALS source scores user factors · item factors, so its k-NN index retrieves by that inner product
(by cosine it would return another list than the one batch ranks)."""


def items_alias(surface: str) -> str:
    return f"items-{surface}"


def users_alias(surface: str) -> str:
    return f"users-{surface}"


def item_properties(cf_dim: int | None, content_dim: int | None) -> dict[str, Any]:
    """The items index mapping; ``cf_dim`` None: the run publishes no CF vectors (the als source dropped)."""
    properties: dict[str, Any] = {
        "item_id": {"type": "keyword"},
        "surface": {"type": "keyword"},
        "title": {"type": "text"},
        "text": {"type": "text"},
        "keywords": {"type": "text"},
        "tags": {"type": "keyword"},
        "topic_path": {"type": "keyword"},
        "predicted_topic_path": {"type": "keyword"},  # the topic classifier's reading of a clip's text
        "creator_id": {"type": "keyword"},
        "region": {"type": "keyword"},
        "location": {"type": "geo_point"},
        "price_level": {"type": "integer"},
        "open_minute": {"type": "integer"},
        "close_minute": {"type": "integer"},
        "popularity": {"type": "float"},
        "trending": {"type": "float"},
        "created_at": {"type": "date"},
        "covisit": {"type": "object", "enabled": False},
        "run_id": {"type": "keyword"},
    }
    if cf_dim:
        properties["cf_vector"] = knn_vector_field(cf_dim, CF_SPACE)
    if content_dim:
        properties["content_vector"] = knn_vector_field(content_dim)
    return properties


def user_properties(cf_dim: int | None, content_dim: int | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "user_id": {"type": "keyword"},
        "profile": {"type": "object", "enabled": False},
        "graph_candidates": {"type": "object", "enabled": False},
        "covisit_seeds": {"type": "keyword", "index": False},
        "seen": {"type": "keyword", "index": False},
        "run_id": {"type": "keyword"},
    }
    if cf_dim:
        properties["cf_vector"] = knn_vector_field(cf_dim, CF_SPACE)
    if content_dim:
        properties["content_vector"] = knn_vector_field(content_dim)
    return properties


def _vector(values: Sequence[float] | None) -> list[float] | None:
    """A vector for a knn field, or None for an absent or all-zero one (cosine can't index those)."""
    if values is None:
        return None
    vector = [float(x) for x in values]
    return vector if any(vector) else None


def item_document(profile: ItemProfile, surface: str, meta: Mapping[str, Any], cf_vector: Sequence[float] | None,
                  covisit: Sequence[tuple[str, float]], run_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "item_id": profile.item_id, "surface": surface, "tags": list(profile.tags), "topic_path": profile.topic_path,
        "popularity": profile.popularity, "trending": profile.trending,
        "created_at": profile.created_at.isoformat() if profile.created_at else None,
        "covisit": [{"item_id": i, "score": float(s)} for i, s in covisit], "run_id": run_id,
        **{k: v for k, v in meta.items() if v is not None},
    }
    if profile.lat is not None and profile.lon is not None:
        doc["location"] = {"lat": profile.lat, "lon": profile.lon}
    return _with_vectors(doc, cf_vector, profile.content_vector)


def _with_vectors(doc: dict[str, Any], cf_vector: Sequence[float] | None,
                  content_vector: Sequence[float] | None) -> dict[str, Any]:
    for field_name, values in (("cf_vector", cf_vector), ("content_vector", content_vector)):
        vector = _vector(values)
        if vector is not None:
            doc[field_name] = vector
    return doc


def item_profile_from_document(doc: Mapping[str, Any]) -> ItemProfile:
    location = doc.get("location") or {}
    created = doc.get("created_at")
    return ItemProfile(
        item_id=doc["item_id"], topic_path=doc.get("topic_path", ""), tags=tuple(doc.get("tags", ())),
        popularity=float(doc.get("popularity", 0.0)), trending=float(doc.get("trending", 0.0)),
        created_at=datetime.fromisoformat(created) if created else None,
        lat=location.get("lat"), lon=location.get("lon"), content_vector=doc.get("content_vector"))


def user_document(profile: UserProfile, cf_vector: Sequence[float] | None, graph_candidates: Sequence[tuple[str, float]],
                  seen: Sequence[str], covisit_seeds: Sequence[str], run_id: str) -> dict[str, Any]:
    """Scores are kept at full precision: serving ranks by them exactly as batch did."""
    doc: dict[str, Any] = {
        "user_id": profile.user_id,
        "profile": {"topic_affinity": dict(profile.topic_affinity), "topic_skips": dict(profile.topic_skips),
                    "interest_tags": dict(profile.interest_tags), "activity": profile.activity,
                    "items": profile.items, "lat": profile.lat, "lon": profile.lon},
        "graph_candidates": [{"item_id": i, "score": float(s)} for i, s in graph_candidates],
        "seen": list(seen), "covisit_seeds": list(covisit_seeds), "run_id": run_id,
    }
    return _with_vectors(doc, cf_vector, profile.content_vector)


def user_profile_from_document(doc: Mapping[str, Any]) -> UserProfile:
    profile = doc.get("profile", {})
    return UserProfile(
        user_id=doc["user_id"], topic_affinity=profile.get("topic_affinity", {}),
        topic_skips=profile.get("topic_skips", {}), interest_tags=profile.get("interest_tags", {}),
        activity=float(profile.get("activity", 0.0)), items=int(profile.get("items", 0)),
        lat=profile.get("lat"), lon=profile.get("lon"), content_vector=doc.get("content_vector"))
