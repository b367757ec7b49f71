"""The lake sink: events and search queries from Kafka into Iceberg, exactly once.

Each micro-batch is one Iceberg commit per table whose snapshot summary carries the Kafka offsets it
covers (``hybridrec.kafka-offsets``: ``{topic: {partition: next_offset}}``, every partition the table
has ever taken). The data and the offsets become visible together or not at all, so the lake itself
says how far it got: on start and after every rebalance the sink seeks to the offsets of the newest
snapshot that carries them (walking back over snapshots that do not, such as compactions), not to
Kafka's committed offsets, which are only updated afterwards for lag monitoring.

A commit is also fenced: it goes through only if, for each partition in the batch, the table's
offsets still equal where the batch began. Iceberg's optimistic concurrency makes that check and
the append one atomic step, so a member that lost its partitions in a rebalance it has not noticed
yet cannot append a batch that the new owner appends too.

Messages that break the contract go to the dead-letter topic; the producer is flushed before the
commit that moves past them, so each is dead-lettered at least once (a crash in between can repeat
one; the ``source-*`` headers identify repeats).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
from kafka import TopicPartition
from kafka.errors import CommitFailedError
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot, ancestors_of

from hybridrec.bus import EventBus
from hybridrec.config import Settings
from hybridrec.contract import EVENTS, SEARCH_QUERIES, TableSpec
from hybridrec.lake import Lake, catalog_unreachable
from hybridrec.runinfo import RunContext, new_run
from hybridrec.streaming.inbox import Batch, Inbox, Message
from hybridrec.streaming.lifecycle import stop_on_signals
from hybridrec.streaming.metrics import Metrics
from hybridrec.streaming.validation import KnownItems, LakeItems, Validator

log = logging.getLogger(__name__)

OFFSETS_PROPERTY = "hybridrec.kafka-offsets"
DEAD_LETTERED_PROPERTY = "hybridrec.dead-lettered"
COMMIT_ATTEMPTS = 10
POLL_MS = 200
POLL_RECORDS = 10_000  # at most; a smaller configured batch size wins

# Streaming commits often: keep old metadata files from piling up and manifests few.
SINK_TABLE_PROPERTIES = {
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    "commit.manifest-merge.enabled": "true",
}

Offsets = dict[str, dict[int, int]]  # topic -> partition -> next offset


def offsets_lineage(table: Table) -> Iterator[tuple[Snapshot, str | None]]:
    """The current snapshot and its ancestors, newest first, each with its offsets property if any."""
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        yield snapshot, (snapshot.summary.additional_properties if snapshot.summary else {}).get(OFFSETS_PROPERTY)


def committed_offsets(table: Table) -> Offsets:
    """The offsets of the newest snapshot that carries them, or {} if none does."""
    for _, raw in offsets_lineage(table):
        if raw is not None:
            return {topic: {int(p): int(o) for p, o in parts.items()} for topic, parts in json.loads(raw).items()}
    return {}


@dataclass
class _Partition:
    """A partition this member owns: where the lake stands on it and what is buffered beyond that."""

    start: int | None  # the lake's next offset (None: the lake never took anything from it)
    next: int  # the offset after the last buffered message
    messages: list[Message] = field(default_factory=list)
    dead_lettered: int = 0

    @property
    def progressed(self) -> bool:
        return bool(self.messages) or self.dead_lettered > 0


class LakeSink:
    def __init__(self, lake: Lake, bus: EventBus, inbox: Inbox, tables: dict[str, TableSpec], items: KnownItems,
                 run: RunContext, metrics: Metrics, batch_messages: int, flush_interval_ms: int,
                 catalog_outage_s: float = 0.0):
        self.lake, self.bus, self.inbox, self.tables, self.items = lake, bus, inbox, tables, items
        self.run_context, self.metrics = run, metrics
        self.batch_messages = batch_messages
        self.flush_interval_s = flush_interval_ms / 1000
        self.catalog_outage_s = catalog_outage_s
        self._owned: dict[TopicPartition, _Partition] = {}
        self._buffered = 0
        self._first_buffered_at: float | None = None
        self._positioned = True  # False from a rebalance until the partitions are positioned at the lake

    def prepare_tables(self) -> None:
        """Create the tables if needed and give them the properties a frequently committing writer wants."""
        for spec in self.tables.values():
            table = self.lake.table(spec)
            wanted = {k: v for k, v in SINK_TABLE_PROPERTIES.items() if table.properties.get(k) != v}
            if wanted:
                try:
                    with table.transaction() as tx:
                        tx.set_properties(wanted)
                except CommitFailedException:
                    log.info("%s.%s properties were set concurrently", *spec.identifier)

    def step(self) -> Batch:
        self.items.refresh_if_due()
        batch = self.inbox.poll()
        self._positioned = self._positioned and not batch.rebalanced
        self._buffer(batch if self._positioned else self._reposition(batch))
        if self._flush_due():
            self.flush()
        self.metrics.maybe_log()
        return batch

    def _reposition(self, batch: Batch) -> Batch:
        """Forget buffered work and continue every owned partition where its table stands. Returns the
        part of ``batch`` that already begins there (Kafka's committed offsets usually agree with the
        lake's); the rest is fetched again from the lake's offsets."""
        self._owned.clear()
        self._buffered, self._first_buffered_at = 0, None
        lake_offsets = {topic: committed_offsets(self.lake.table(spec)).get(topic, {})
                        for topic, spec in self.tables.items()}
        first, usable = batch.first_offsets(), set()
        for tp in sorted(self.inbox.assignment()):
            start = lake_offsets[tp.topic].get(tp.partition)
            if start is not None and first.get(tp) == start:
                usable.add(tp)
            else:
                self.inbox.seek(tp, start)
            self._owned[tp] = _Partition(start, start if start is not None else self.inbox.position(tp))
        log.info("continuing where the lake stands: %s", ", ".join(
            f"{tp.topic}/{tp.partition}@{p.next}{'' if p.start is not None else ' (new)'}"
            for tp, p in sorted(self._owned.items())) or "no partitions")
        self._positioned = True
        return batch.only(usable)

    def _buffer(self, batch: Batch) -> None:
        for record, rejection in batch.rejected:
            owned = self._owned.get(TopicPartition(record.topic, record.partition))
            if owned is not None and record.offset >= owned.next:
                self.bus.dead_letter(record, rejection.reason.value, rejection.detail)
                owned.dead_lettered += 1
        for message in batch.accepted:
            owned = self._owned.get(message.tp)
            if owned is not None and message.offset >= owned.next:  # never buffer a message twice
                owned.messages.append(message)
        for tp, end in batch.ends.items():
            if tp in self._owned:
                self._owned[tp].next = max(self._owned[tp].next, end)
        if len(batch):
            self._buffered += len(batch)
            self._first_buffered_at = self._first_buffered_at or time.monotonic()

    def _flush_due(self) -> bool:
        return self._buffered >= self.batch_messages or (
            self._first_buffered_at is not None and time.monotonic() - self._first_buffered_at >= self.flush_interval_s)

    def flush(self) -> None:
        """Commit everything buffered: dead letters acknowledged first, then one Iceberg commit per table."""
        if not any(p.progressed for p in self._owned.values()):
            self._buffered, self._first_buffered_at = 0, None
            return
        self.bus.flush()
        for topic, spec in self.tables.items():
            partitions = {tp.partition: p for tp, p in self._owned.items() if tp.topic == topic and p.progressed}
            if partitions:
                self._commit(spec, topic, partitions)
        self._buffered, self._first_buffered_at = 0, None
        try:
            self.inbox.commit({tp: p.start for tp, p in self._owned.items() if p.start is not None})
        except CommitFailedError as error:  # informational only; the lake holds the truth
            log.warning("Kafka offset commit refused (%s)", error)

    def _commit(self, spec: TableSpec, topic: str, partitions: dict[int, _Partition]) -> None:
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            table = self.lake.table(spec)
            offsets = committed_offsets(table)
            lake = offsets.get(topic, {})
            for p in [p for p, state in partitions.items() if lake.get(p) != state.start]:
                self._fence(TopicPartition(topic, p), lake.get(p))
                del partitions[p]
            if not partitions:
                return
            messages = [m for state in partitions.values() for m in state.messages]
            offsets[topic] = {**lake, **{p: state.next for p, state in partitions.items()}}
            properties = {
                **self.run_context.stamp(),
                OFFSETS_PROPERTY: json.dumps({t: {str(p): o for p, o in sorted(parts.items())}
                                              for t, parts in sorted(offsets.items())}),
                DEAD_LETTERED_PROPERTY: str(sum(state.dead_lettered for state in partitions.values())),
            }
            started = time.perf_counter()
            try:
                with table.transaction() as tx:
                    tx.append(_to_arrow(spec, messages), snapshot_properties=properties)
            except CommitFailedException as error:
                log.info("%s.%s changed underneath (attempt %d/%d): %s", *spec.identifier, attempt,
                         COMMIT_ATTEMPTS, error)
                continue
            for state in partitions.values():
                state.start, state.messages, state.dead_lettered = state.next, [], 0
            self.metrics.add(f"lake.{spec.name}.rows", len(messages))
            self.metrics.add("lake.commits")
            self.metrics.add("committed", len(messages))
            log.debug("%s.%s: +%d rows in %.2fs, offsets %s", *spec.identifier, len(messages),
                      time.perf_counter() - started, offsets[topic])
            return
        raise RuntimeError(f"{spec.qualified_name}: no commit after {COMMIT_ATTEMPTS} attempts")

    def _fence(self, tp: TopicPartition, lake_offset: int | None) -> None:
        """Someone else moved the table on for ``tp``: drop our batch and continue where they stopped."""
        log.warning("%s/%d: the lake is at %s, not where this batch began; another member wrote it. "
                    "Dropping the batch and continuing from the lake.", tp.topic, tp.partition, lake_offset)
        self.metrics.add("lake.fenced")
        self.inbox.seek(tp, lake_offset)
        self._owned[tp] = _Partition(lake_offset, lake_offset if lake_offset is not None else self.inbox.position(tp))

    def run(self, stop: threading.Event, targets: dict[TopicPartition, int] | None = None) -> dict[str, float]:
        """Until ``stop`` is set (then flush), or (with ``targets``) until the lake holds them all."""
        self._through_catalog_outage(self.prepare_tables, stop)
        try:
            while not stop.is_set():
                self._through_catalog_outage(self.step, stop)
                if targets is not None and self.inbox.caught_up(targets, {tp: p.next for tp, p in self._owned.items()}):
                    break
            self._through_catalog_outage(self.flush, stop)
        finally:
            self.inbox.close()
            self.bus.close()
        return self.metrics.snapshot()

    def _through_catalog_outage(self, action: Callable[[], object], stop: threading.Event) -> None:
        """``action()``, retried while the catalog's server cannot be reached (a restart, a failover), for
        up to ``catalog_outage_s``. Safe to repeat: buffered work stays buffered, and a commit whose answer
        the outage swallowed is settled by the lake's offsets on the next attempt (landed: fenced and not
        appended again; lost: appended)."""
        outage_started = None
        while True:
            try:
                action()
                return
            except Exception as error:  # only the catalog's server being unreachable is retried
                if not catalog_unreachable(error):
                    raise
                now = time.monotonic()
                outage_started = outage_started or now
                if now - outage_started >= self.catalog_outage_s or stop.is_set():
                    raise
                self.metrics.add("lake.catalog_unreachable")
                log.warning("the catalog is unreachable for %.0fs (%s); retrying", now - outage_started,
                            str(error).splitlines()[0])
                stop.wait(1.0)


def _to_arrow(spec: TableSpec, messages: list[Message]) -> pa.Table:
    records = [m.record for m in messages]
    return spec.to_arrow({name: [getattr(r, name) for r in records] for name in spec.column_names})


def build_sink(settings: Settings, instance_id: str | None = None) -> LakeSink:
    k, s = settings.kafka, settings.streaming
    lake = Lake(settings)
    items = LakeItems(lake, s.known_items_refresh_s)
    validator = Validator(items, s.max_future_skew_s)
    metrics = Metrics("sink", log_every_s=10.0)
    bus = EventBus(settings, client_id="hybridrec-sink")
    inbox = Inbox(bus, s.sink_group, {k.events_topic: validator.event, k.queries_topic: validator.query},
                  metrics, instance_id=instance_id, poll_ms=POLL_MS,
                  max_records=min(POLL_RECORDS, s.sink_batch_messages))
    tables = {k.events_topic: EVENTS, k.queries_topic: SEARCH_QUERIES}
    return LakeSink(lake, bus, inbox, tables, items, new_run(settings, "stream-sink"), metrics,
                    s.sink_batch_messages, s.sink_flush_interval_ms, s.sink_catalog_outage_s)


def run_sink(settings: Settings, instance_id: str | None = None, until_caught_up: bool = False) -> dict[str, float]:
    """The `hybridrec stream sink` process: micro-batches into Iceberg until SIGTERM (or caught up)."""
    stop = stop_on_signals()
    targets = None
    if until_caught_up:
        targets = EventBus(settings).end_offsets([settings.kafka.events_topic, settings.kafka.queries_topic])
    sink = build_sink(settings, instance_id)
    log.info("lake sink %s in group %s -> %s", instance_id or "(dynamic member)", settings.streaming.sink_group,
             ", ".join(f"{t} -> {s.qualified_name}" for t, s in sink.tables.items()))
    return sink.run(stop, targets)
