"""Replay recorded activity into Kafka at a chosen rate, so the whole system can be watched live.

Events (and the search queries they refer to) are read from Iceberg one day at a time, merged in
time order, and produced keyed by user id. A replay re-enacts the activity *now*: each message is
stamped with the moment it is sent, and its ids (event, query, feed request) get a replay suffix, so
the sink appends new events to the lake instead of clashing with the recorded ones, and two
replays never collide either.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

from hybridrec.bus import EventBus, encode
from hybridrec.config import Settings
from hybridrec.contract import EVENTS, SEARCH_QUERIES, TableSpec
from hybridrec.lake import Lake

log = logging.getLogger(__name__)

ROWS_PER_SLICE = 2000  # Arrow -> Python conversion in slices, so a day boundary does not stall the rate
RELABELLED = {"events": ("event_id", "request_id", "query_id"), "queries": ("query_id",)}


@dataclass(frozen=True)
class ReplayResult:
    events: int
    queries: int
    seconds: float

    @property
    def per_second(self) -> float:
        return (self.events + self.queries) / self.seconds if self.seconds else 0.0


def lake_days(lake: Lake, spec: TableSpec) -> Iterator[pa.Table]:
    """A ``ts``-partitioned table one day at a time, each day sorted by ``ts``."""
    if not lake.exists(spec) or lake.count(spec) == 0:
        return
    bounds = pc.min_max(lake.scan(spec, columns=("ts",))["ts"]).as_py()
    day = bounds["min"].replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= bounds["max"]:
        following = day + timedelta(days=1)
        window = And(GreaterThanOrEqual("ts", day.isoformat()), LessThan("ts", following.isoformat()))
        yield lake.scan(spec, row_filter=window).sort_by("ts")
        day = following


def rows(tables: Iterable[pa.Table]) -> Iterator[dict[str, Any]]:
    for table in tables:
        for start in range(0, table.num_rows, ROWS_PER_SLICE):
            yield from table.slice(start, ROWS_PER_SLICE).to_pylist()


def in_time_order(events: Iterable[pa.Table], queries: Iterable[pa.Table]) -> Iterator[tuple[str, dict[str, Any]]]:
    """("events" | "queries", row) pairs merged by ``ts``; each input is already in time order."""
    tagged_events = (("events", row) for row in rows(events))
    tagged_queries = (("queries", row) for row in rows(queries))
    return heapq.merge(tagged_events, tagged_queries, key=lambda pair: pair[1]["ts"])


def relabel(kind: str, row: dict[str, Any], suffix: str, now: datetime) -> dict[str, Any]:
    """The row re-enacted at ``now`` with replay-unique ids."""
    row = dict(row, ts=now)
    for name in RELABELLED[kind]:
        if row.get(name) is not None:
            row[name] = f"{row[name]}.{suffix}"
    return row


class Pacer:
    """Holds a producer to ``rate`` messages per second on average (it catches up after a stall)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate
        self.clock, self.sleep = clock, sleep
        self.started = clock()
        self.sent = 0

    def wait(self) -> None:
        due = self.started + self.sent * self.interval
        ahead = due - self.clock()
        if ahead > 0.002:
            self.sleep(ahead)
        self.sent += 1


def replay(bus: EventBus, messages: Iterable[tuple[str, dict[str, Any]]], rate: float, suffix: str | None,
           limit: int | None = None, progress_every_s: float = 5.0) -> ReplayResult:
    """Produce ``messages`` (kind, row) to the configured topics at ``rate``/s (0: as fast as possible),
    re-enacted now with ids suffixed by ``suffix`` (None: ids and timestamps as recorded)."""
    k = bus.settings.kafka
    topics = {"events": k.events_topic, "queries": k.queries_topic}
    pacer = Pacer(rate) if rate else None
    counts = {"events": 0, "queries": 0}
    started = last_log = time.perf_counter()
    for n, (kind, row) in enumerate(messages):
        if limit is not None and n >= limit:
            break
        if pacer is not None:
            pacer.wait()
        if suffix is not None:
            row = relabel(kind, row, suffix, datetime.now(timezone.utc))
        bus.publish(topics[kind], row["user_id"], encode(row))
        counts[kind] += 1
        if time.perf_counter() - last_log >= progress_every_s:
            last_log = time.perf_counter()
            log.info("replay: %d events, %d queries sent (%.0f/s)", counts["events"], counts["queries"],
                     (n + 1) / (last_log - started))
    bus.flush()
    result = ReplayResult(counts["events"], counts["queries"], time.perf_counter() - started)
    log.info("replay done: %d events and %d queries in %.1fs (%.0f/s)", result.events, result.queries,
             result.seconds, result.per_second)
    return result


def run_replay(settings: Settings, events_table: str = "raw.events", queries_table: str | None = "raw.search_queries",
               rate: float | None = None, limit: int | None = None, suffix: str | None = None,
               as_recorded: bool = False) -> ReplayResult:
    """The `hybridrec stream replay` command: a lake events table (and queries table) into Kafka at
    ``rate``/s (None: the configured rate, 0: as fast as possible)."""
    lake = Lake(settings)
    events = lake_days(lake, EVENTS.relocated(*events_table.split(".", 1)))
    queries = lake_days(lake, SEARCH_QUERIES.relocated(*queries_table.split(".", 1))) if queries_table else iter(())
    rate = settings.streaming.replay_rate if rate is None else rate
    suffix = None if as_recorded else suffix or f"r{datetime.now(timezone.utc):%m%d%H%M%S}"
    log.info("replaying %s%s at %s%s", events_table, f" and {queries_table}" if queries_table else "",
             f"{rate:.0f}/s" if rate else "full speed", f", re-enacted now with ids suffixed .{suffix}" if suffix
             else ", as recorded")
    bus = EventBus(settings, client_id="hybridrec-replay")
    try:
        return replay(bus, in_time_order(events, queries), rate, suffix, limit)
    finally:
        bus.close()
