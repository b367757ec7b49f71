"""Deterministic experiment assignment: a user's variant is a pure function of their id and the config.

One function for every place that needs a user's arm: the feed API (which arm serves the user), the
event writer (which arm an event belongs to) and the synthetic world (which arm its users' recorded
events carry), so the experiment report's split is the configured one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from hybridrec.config import ExperimentVariant

HASH_BUCKETS = 10_000


def bucket(experiment: str, user_id: str) -> float:
    """Where the user falls in [0, 1) for this experiment (salted, so experiments are independent)."""
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HASH_BUCKETS / HASH_BUCKETS


def assign(experiment: str, variants: Sequence[ExperimentVariant], user_id: str) -> ExperimentVariant:
    """The variant whose share of the weight covers the user's bucket; same user, same variant, every time."""
    total = sum(v.weight for v in variants)
    point = bucket(experiment, user_id) * total
    cumulative = 0.0
    for variant in variants:
        cumulative += variant.weight
        if point < cumulative:
            return variant
    return variants[-1]
