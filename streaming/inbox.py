"""One consumer-group member's view of the topics: poll, validate against the contract, notice rebalances.

The lake sink and the context updater differ in what they do with messages, not in how they get
them, so both read through an :class:`Inbox`. Rebalance callbacks run on kafka-python's IO thread,
where blocking work is forbidden; the listener therefore only raises a flag, and each consumer
reacts on its own thread after :meth:`Inbox.poll` returns (the sink repositions from the lake, the
updater drops its cache).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from hybridrec.bus import EventBus
from hybridrec.streaming.metrics import Metrics
from hybridrec.streaming.validation import Rejection

log = logging.getLogger(__name__)

Parse = Callable[[bytes], Any]  # bytes -> contract record, or a Rejection


@dataclass(frozen=True)
class Message:
    """A valid message: where it came from and the contract record it holds."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the Kafka record's timestamp (when it was produced)
    record: Any

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass
class Batch:
    accepted: list[Message] = field(default_factory=list)
    rejected: list[tuple[ConsumerRecord, Rejection]] = field(default_factory=list)
    ends: dict[TopicPartition, int] = field(default_factory=dict)  # next offset per partition after the batch
    rebalanced: bool = False

    def __len__(self) -> int:
        return len(self.accepted) + len(self.rejected)

    def first_offsets(self) -> dict[TopicPartition, int]:
        first: dict[TopicPartition, int] = {}
        for tp, offset in [(m.tp, m.offset) for m in self.accepted] + [
                (TopicPartition(r.topic, r.partition), r.offset) for r, _ in self.rejected]:
            first[tp] = min(first.get(tp, offset), offset)
        return first

    def only(self, partitions: set[TopicPartition]) -> "Batch":
        """The part of this batch that came from ``partitions``."""
        return Batch([m for m in self.accepted if m.tp in partitions],
                     [(r, why) for r, why in self.rejected if TopicPartition(r.topic, r.partition) in partitions],
                     {tp: end for tp, end in self.ends.items() if tp in partitions}, self.rebalanced)


class _RebalanceFlag(ConsumerRebalanceListener):
    def __init__(self, group_id: str):
        self.group_id = group_id
        self._flag = threading.Event()

    def on_partitions_revoked(self, revoked):
        if revoked:
            log.info("group %s: revoked %s", self.group_id, _names(revoked))
        self._flag.set()

    def on_partitions_assigned(self, assigned):
        log.info("group %s: assigned %s", self.group_id, _names(assigned))
        self._flag.set()

    def take(self) -> bool:
        raised = self._flag.is_set()
        self._flag.clear()
        return raised


def _names(partitions) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(partitions)) or "nothing"


class Inbox:
    def __init__(self, bus: EventBus, group_id: str, parsers: Mapping[str, Parse], metrics: Metrics,
                 instance_id: str | None = None, poll_ms: int = 100, max_records: int = 2000,
                 **consumer_overrides: Any):
        self.parsers = dict(parsers)
        self.metrics = metrics
        self.poll_ms = poll_ms
        self._rebalance = _RebalanceFlag(group_id)
        self.consumer = bus.consumer(group_id, instance_id, max_poll_records=max_records, **consumer_overrides)
        # Knowing the partitions before joining spares a first, empty assignment (and says if a topic is missing).
        missing = [topic for topic in self.parsers if not self.consumer.partitions_for_topic(topic)]
        if missing:
            self.consumer.close()
            raise RuntimeError(f"topics {missing} do not exist on {bus.bootstrap}; `hybridrec infra up` creates them")
        self.consumer.subscribe(list(self.parsers), listener=self._rebalance)

    def poll(self) -> Batch:
        polled = self.consumer.poll(timeout_ms=self.poll_ms)
        batch = Batch(rebalanced=self._rebalance.take())
        for tp, records in polled.items():
            parse = self.parsers[tp.topic]
            for raw in records:
                result = parse(raw.value)
                if isinstance(result, Rejection):
                    batch.rejected.append((raw, result))
                    self.metrics.add(f"rejected.{result.reason.value}")
                else:
                    batch.accepted.append(Message(tp.topic, tp.partition, raw.offset, raw.timestamp, result))
            batch.ends[tp] = records[-1].offset + 1
        self.metrics.add("consumed", len(batch))
        return batch

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    def seek(self, tp: TopicPartition, offset: int | None) -> None:
        """Continue ``tp`` at ``offset``; None means from its first retained message."""
        if offset is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, offset)

    def position(self, tp: TopicPartition) -> int:
        return self.consumer.position(tp)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record progress in Kafka's group offsets (what lag monitors and a restarted member read)."""
        if offsets:
            self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})

    def caught_up(self, targets: Mapping[TopicPartition, int], done: Mapping[TopicPartition, int]) -> bool:
        """True once this member owns partitions and ``done`` (next offset per partition) reaches
        ``targets`` on each of them."""
        owned = self.assignment()
        return bool(owned) and all(done.get(tp, 0) >= targets.get(tp, 0) for tp in owned)

    def close(self) -> None:
        self.consumer.close()
