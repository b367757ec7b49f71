"""Step 1 of the nightly retrain: events → user×item confidence per surface, in Spark.

Each event type has a weight from config (skips negative), dwell counts in proportion to how long
the user stayed, and everything decays with a half-life, so yesterday's like outweighs last month's.
Only events before the label day are used: the label day is what the ranker learns and is scored on.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from hybridrec.config import RetrainSettings, SignalSettings
from hybridrec.contract import EVENTS, INTERACTIONS
from hybridrec.runinfo import RunContext
from hybridrec.spark import retry_stale_catalog

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TimeSplit:
    """Train on events before ``label_start``; label = engagement in [label_start, label_end)."""

    label_start: datetime
    label_end: datetime

    @classmethod
    def ending_at(cls, last_event_day: date, label_days: int) -> "TimeSplit":
        end = datetime.combine(last_event_day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
        return cls(label_start=end - timedelta(days=label_days), label_end=end)


def last_event_day(spark) -> date:
    row = spark.sql(f"SELECT CAST(max(ts) AS DATE) AS day FROM {EVENTS.qualified_name}").collect()[0]
    if row.day is None:
        raise ValueError(f"{EVENTS.qualified_name} is empty: nothing to retrain on")
    return row.day


def weight_expression(signals: SignalSettings) -> str:
    """SQL for one event's signed weight; dwell scales with time spent, capped at ``dwell_full_ms``."""
    cases = []
    for event_type, weight in sorted(signals.event_weights.items()):
        value = (f"{weight} * least(coalesce(dwell_ms, 0) / {signals.dwell_full_ms}.0, 1.0)" if event_type == "dwell"
                 else str(weight))
        cases.append(f"WHEN '{event_type}' THEN {value}")
    return f"CASE event_type {' '.join(cases)} ELSE 0.0 END"


def interactions_sql(cfg: RetrainSettings, signals: SignalSettings, split: TimeSplit, run: RunContext) -> str:
    decay = math.log(2) / cfg.half_life_days
    label_start = split.label_start.strftime("%Y-%m-%d %H:%M:%S")
    return f"""
        SELECT user_id, item_id, surface,
               sum(({weight_expression(signals)})
                   * exp(-{decay} * (unix_timestamp(TIMESTAMP'{label_start}') - unix_timestamp(ts)) / 86400.0)) AS confidence,
               CAST(count(*) AS INT) AS events,
               max(ts) AS last_ts,
               '{run.run_id}' AS run_id
        FROM {EVENTS.qualified_name}
        WHERE ts < TIMESTAMP'{label_start}' AND item_id IS NOT NULL
        GROUP BY user_id, item_id, surface
        HAVING abs(confidence) > 1e-9
    """


def labels_sql(split: TimeSplit, label_gains: dict[str, int]) -> str:
    """Each user's gain per item on the label days: the best of its events' ``retrain.label_gains``."""
    gains = " ".join(f"WHEN '{t}' THEN {int(g)}" for t, g in label_gains.items())
    start, end = (t.strftime("%Y-%m-%d %H:%M:%S") for t in (split.label_start, split.label_end))
    return f"""
        SELECT user_id, item_id, surface, max(CASE event_type {gains} ELSE 0 END) AS gain
        FROM {EVENTS.qualified_name}
        WHERE ts >= TIMESTAMP'{start}' AND ts < TIMESTAMP'{end}' AND item_id IS NOT NULL
        GROUP BY user_id, item_id, surface
        HAVING gain > 0
    """


def write_interactions(spark, cfg: RetrainSettings, signals: SignalSettings, split: TimeSplit, run: RunContext) -> int:
    """Replace ``derived.interactions`` with this run's matrix (one Iceberg commit, idempotent: retried
    when it meets a stale catalog snapshot, :func:`hybridrec.spark.retry_stale_catalog`)."""
    def write(session) -> None:
        matrix = session.sql(interactions_sql(cfg, signals, split, run))
        matrix.writeTo(INTERACTIONS.qualified_name).overwritePartitions()

    spark, _ = retry_stale_catalog(spark, write)
    rows = spark.table(INTERACTIONS.qualified_name).where(f"run_id = '{run.run_id}'").count()
    log.info("interactions: %d user-item pairs before %s", rows, split.label_start.date())
    return rows
