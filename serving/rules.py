"""Business rules between the ranker and the response: what may be shown, and in which mix.

Order matters and is fixed: hard filters first (already seen or skipped, business filters, topic
consistency), then one greedy pass that picks the feed by maximal marginal relevance under the
creator and topic caps. A cap is never relaxed to fill a feed: a shorter feed beats a broken rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from hybridrec.config import ExperimentVariant, ServingSettings
from hybridrec.taxonomy import Taxonomy

MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class RuleSet:
    """The rules one request runs under (the experiment variant may change MMR and topic consistency)."""

    max_per_creator: int
    max_topic_share: float
    mmr_lambda: float
    topic_consistency: bool
    min_topic_share: float
    open_now_only: bool
    timezone: str

    @classmethod
    def from_settings(cls, s: ServingSettings, surface: str, variant: ExperimentVariant | None = None) -> "RuleSet":
        """The rules of a ``surface``'s feed under ``variant`` (None: the configured defaults). Topic
        consistency holds on ``serving.topic_consistency_surfaces`` only."""
        mmr_lambda = variant.mmr_lambda if variant is not None and variant.mmr_lambda is not None else s.mmr_lambda
        consistency = (variant is None or variant.topic_consistency) and surface in s.topic_consistency_surfaces
        return cls(s.max_per_creator, s.max_topic_share, mmr_lambda, consistency, s.min_topic_share,
                   s.open_now_only, s.timezone)


def blocked_topics(taxonomy: Taxonomy, topic_affinity: Mapping[str, float], min_share: float) -> set[str]:
    """Siblings of the user's interests that the user shows no interest in: a soccer fan's baseball.

    An interest is a topic with at least ``min_share`` of the user's affinity; its same-aspect
    siblings are blocked unless they are interests themselves. Topics outside the interests'
    families stay open (exploration is not filler of a known interest)."""
    interests = {t for t, share in topic_affinity.items() if share >= min_share and t in taxonomy}
    blocked: set[str] = set()
    for topic in interests:
        blocked.update(s.path for s in taxonomy.siblings(topic))
    return {b for b in blocked if b not in interests and not any(Taxonomy.is_ancestor(b, i) for i in interests)}


def topic_allowed(topic: str, blocked: set[str]) -> bool:
    return not any(topic == b or Taxonomy.is_ancestor(b, topic) for b in blocked)


def open_at(doc: Mapping[str, Any], minute_of_day: int) -> bool:
    """Opening hours in minutes after local midnight; closing may pass midnight (e.g. 1080..1560)."""
    opens, closes = doc.get("open_minute"), doc.get("close_minute")
    if opens is None or closes is None:
        return True  # unknown hours: no reason to hide the place
    return opens <= minute_of_day < closes or opens <= minute_of_day + MINUTES_PER_DAY < closes


def local_minute(now: datetime, timezone: str) -> int:
    local = now.astimezone(ZoneInfo(timezone))
    return local.hour * 60 + local.minute


def hard_filters(items: Mapping[str, Mapping[str, Any]], surface: str, rules: RuleSet, blocked: set[str],
                 now: datetime) -> tuple[list[str], dict[str, int]]:
    """Items that pass topic consistency and opening hours, and how many each rule removed.

    Topic consistency reads the catalogue's topic and the topic classifier's (``predicted_topic_path``,
    published by the retrain): a baseball clip filed under plain "sports" is still baseball."""
    minute = local_minute(now, rules.timezone)
    kept, removed = [], {"topic": 0, "closed": 0}
    allowed: dict[tuple[str, str], bool] = {}  # per topic pair: candidates share few topics
    for item_id, doc in items.items():
        topics = (doc.get("topic_path") or "", doc.get("predicted_topic_path") or "")
        if topics not in allowed:
            allowed[topics] = not rules.topic_consistency or all(topic_allowed(t, blocked) for t in topics if t)
        if not allowed[topics]:
            removed["topic"] += 1
        elif surface == "place" and rules.open_now_only and not open_at(doc, minute):
            removed["closed"] += 1
        else:
            kept.append(item_id)
    return kept, removed


class Similarity:
    """Cosine similarity of one pool item to every other, for diversity: content vectors when every item
    has one, else CF factors, else none (0). The vectors are stacked once and never normalised as a
    matrix: dividing each product row by the norms spares a temporary of the matrix's size."""

    def __init__(self, docs: Sequence[Mapping[str, Any]]):
        self.matrix: np.ndarray | None = None
        self.norms: np.ndarray | None = None
        for field_name in ("content_vector", "cf_vector"):
            vectors = [d.get(field_name) for d in docs]
            if all(v is not None and len(v) for v in vectors) and len({len(v) for v in vectors}) == 1:
                self.matrix = np.stack(vectors).astype(np.float64, copy=False)
                norms = np.sqrt(np.einsum("ij,ij->i", self.matrix, self.matrix))
                self.norms = np.where(norms == 0, 1.0, norms)
                return

    def to(self, row: int) -> np.ndarray | float:
        if self.matrix is None or self.norms is None:
            return 0.0
        return (self.matrix @ self.matrix[row]) / (self.norms * self.norms[row])


def select(ranked: Sequence[tuple[str, float]], items: Mapping[str, Mapping[str, Any]], limit: int,
           rules: RuleSet) -> list[str]:
    """Greedy MMR under caps: each step takes the allowed item maximising
    λ·relevance − (1−λ)·(max cosine to the items already picked); relevance is the score min-max scaled.
    Only the picked items' similarity rows are computed (``limit`` of the pool's rows)."""
    pool = list(ranked[: max(limit * 10, 200)])  # deep enough that caps still leave a full feed
    if not pool:
        return []
    scores = np.array([s for _, s in pool], dtype=np.float64)
    span = scores.max() - scores.min()
    relevance = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    similarity = Similarity([items[i] for i, _ in pool])
    topic_cap = max(1, math.floor(rules.max_topic_share * limit))
    creators: dict[str, int] = {}
    topics: dict[str, int] = {}
    max_sim = np.full(len(pool), -np.inf)
    available = np.ones(len(pool), dtype=bool)
    picked: list[str] = []
    while len(picked) < limit:
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = rules.mmr_lambda * relevance - (1 - rules.mmr_lambda) * penalty
        value[~available] = -np.inf
        best = int(np.argmax(value))
        if not np.isfinite(value[best]):
            break
        available[best] = False
        doc = items[pool[best][0]]
        creator, topic = doc.get("creator_id"), doc.get("topic_path", "")
        if (creator and creators.get(creator, 0) >= rules.max_per_creator) or topics.get(topic, 0) >= topic_cap:
            continue
        picked.append(pool[best][0])
        if creator:
            creators[creator] = creators.get(creator, 0) + 1
        topics[topic] = topics.get(topic, 0) + 1
        max_sim = np.maximum(max_sim, similarity.to(best))
    return picked
