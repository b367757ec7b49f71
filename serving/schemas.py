"""The feed API's response bodies as pydantic models: what ``/docs`` and generated clients see.

The feed route sends its body as orjson bytes (fast path) rather than through these models, so a
unit test validates real feed bodies against :class:`FeedResponse`; ``extra="forbid"`` makes any
field the server sends but this file does not declare fail that test instead of drifting.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hybridrec.features.segments import SEGMENTS

Surface = Literal["place", "clip"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(_Body):
    """Every error: a message saying what is wrong and, for invalid input, one line per problem."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"error": "invalid request: query.limit: Input should be less than or equal to 100",
         "details": ["query.limit: Input should be less than or equal to 100"]},
        {"error": "missing API key: send it in the X-API-Key header"}]})
    error: str
    details: list[str] | None = None


class FeedItem(_Body):
    item_id: str
    position: int = Field(ge=1)
    score: float | None = Field(description="ranker score; null in a degraded (fallback) feed")
    sources: list[str] = Field(description="candidate sources that proposed the item")
    title: str | None
    topic_path: str | None
    reason: str = Field(description="personal (naming the user's searches or likes) only for a caller holding "
                                    "a user claim for this user; otherwise generic, naming the source only")


class FeedResponse(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "request_id": "5f0c3a9e2b7d4c1e8a6f9b0d2c4e6a8b", "user_id": "u7c1f9e2a4b6d8c0e", "surface": "clip",
        "run_id": "20261128T020000-3f2a", "experiment_variant": "control", "segment": "light", "degraded": False,
        "sources_answered": {"als": 50, "content": 50, "popular": 150},
        "sources_missing": ["graph", "covisit", "geo"],
        "items": [{"item_id": "c00412", "position": 1, "score": 0.8731, "sources": ["als", "content"],
                   "title": "Late-night ramen crawl", "topic_path": "food/japanese/ramen",
                   "reason": "because you searched for 'ramen'"}],
        "timings_ms": {"queue": 0.2, "load": 3.1, "candidates": 9.8, "rank": 4.2, "rules": 1.1, "respond": 0.3}}]})
    request_id: str
    user_id: str
    surface: Surface
    run_id: str | None = Field(description="the retrain run whose index and ranker answered (or made the fallback)")
    experiment_variant: str
    segment: str = Field(description=f"{', '.join(SEGMENTS)} (the offline evaluation's segments: heavy from "
                                     "retrain.heavy_user_items engaged items); unknown when degraded")
    degraded: bool = Field(description="true: the fallback list answered, not the personalised pipeline")
    degraded_reason: str | None = Field(None, description="why the feed is degraded (only when it is)")
    sources_answered: dict[str, int]
    sources_missing: list[str]
    items: list[FeedItem]
    timings_ms: dict[str, float] = Field(description="wall time per pipeline stage")


class SimilarItem(_Body):
    item_id: str
    score: float
    title: str | None
    topic_path: str | None
    reason: str


class SimilarResponse(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "item_id": "p00017", "surface": "place", "by": "content_vector",
        "items": [{"item_id": "p00342", "score": 0.91, "title": "Menya Sapporo", "topic_path": "food/japanese/ramen",
                   "reason": "also about 'ramen'"}]}]})
    item_id: str
    surface: Surface
    by: Literal["content_vector", "cf_vector"] | None = Field(description="the vector compared; null: the item has none")
    items: list[SimilarItem]


class Accepted(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"accepted": 2}]})
    accepted: int = Field(ge=0, description="records written to Kafka")


class Health(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "ok"}]})
    status: Literal["ok"]


class ConfigMatch(_Body):
    run_id: str
    run: str | None = Field(description="model-config hash the run was made under; null: made before runs had one")
    server: str = Field(description="this server's model-config hash")
    match: bool


class Readiness(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "ready": True, "checks": {"opensearch": True, "kafka": True, "model_place": True, "model_clip": True,
                                  "fallback": True, "warm": True},
        "runs": {"place": "20261128T020000-3f2a", "clip": "20261128T020000-3f2a"},
        "config_match": {"place": {"run_id": "20261128T020000-3f2a", "run": "9c1e0b7d2a4f6e81",
                                   "server": "9c1e0b7d2a4f6e81", "match": True}, "clip": None}}]})
    ready: bool
    checks: dict[str, bool] = Field(description="each dependency: true when available")
    runs: dict[str, str | None] = Field(description="the run served per surface; null: none loaded")
    config_match: dict[str, ConfigMatch | None] = Field(
        description="per surface, the served run's model-config hash against this server's (a mismatch still "
                    "serves, and is reported here and in hybridrec_model_config_match); null: no run loaded")


def problems(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses=`` for the error statuses a route can answer, all with the :class:`Problem` body."""
    described = {400: "Unknown query parameter", 401: "Missing or invalid API key or user token",
                 403: "No API key is configured for this endpoint", 404: "Not found",
                 422: "Invalid input", 429: "Rate limit exceeded (see Retry-After)",
                 503: "A dependency is unavailable (see Retry-After where given)"}
    return {status: {"model": Problem, "description": described[status]} for status in statuses}
