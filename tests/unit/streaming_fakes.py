"""Stand-ins for the boundaries the streaming code owns (the Inbox over Kafka, the bus's dead-letter
producer, the context store over OpenSearch), so the sink's and the updater's logic can be tested
without services."""

from __future__ import annotations

import copy
from collections import deque
from datetime import datetime, timedelta, timezone

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from opensearchpy.exceptions import ConnectionError as SearchConnectionError

from hybridrec.bus import EventBus
from hybridrec.contract import EventRecord
from hybridrec.streaming.context_store import ContextStore, Stored, Version
from hybridrec.streaming.inbox import Batch, Inbox, Message
from hybridrec.streaming.metrics import Metrics
from hybridrec.streaming.validation import Reason, Rejection

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def event_message(topic: str, partition: int, offset: int, user: str = "u1", item: str = "c1",
                  event_type: str = "click") -> Message:
    record = EventRecord(event_id=f"{topic}-{partition}-{offset}", user_id=user, item_id=item, surface="clip",
                         event_type=event_type, ts=T0 + timedelta(seconds=offset))
    return Message(topic, partition, offset, 0, record)


def raw_record(topic: str, partition: int, offset: int, value: bytes = b"{oops") -> ConsumerRecord:
    return ConsumerRecord(topic, partition, -1, offset, 0, 0, b"u1", value, [], None, 2, len(value), 0)


def batch(accepted=(), rejected=(), rebalanced=False) -> Batch:
    b = Batch(list(accepted), list(rejected), rebalanced=rebalanced)
    for tp, offset in [(m.tp, m.offset) for m in accepted] + [(TopicPartition(r.topic, r.partition), r.offset)
                                                              for r, _ in rejected]:
        b.ends[tp] = max(b.ends.get(tp, 0), offset + 1)
    return b


class FakeInbox(Inbox):
    """Hands out queued batches; records seeks and commits. Positions start at ``beginning``."""

    def __init__(self, partitions: list[TopicPartition], beginning: int = 0):
        self.metrics = Metrics("test")
        self.partitions = set(partitions)
        self.batches: deque[Batch] = deque()
        self.seeks: list[tuple[TopicPartition, int | None]] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.positions = {tp: beginning for tp in partitions}
        self.beginning = beginning

    def poll(self) -> Batch:
        polled = self.batches.popleft() if self.batches else Batch()
        for tp, end in polled.ends.items():
            self.positions[tp] = end
        return polled

    def assignment(self):
        return set(self.partitions)

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))
        self.positions[tp] = self.beginning if offset is None else offset

    def position(self, tp):
        return self.positions[tp]

    def commit(self, offsets):
        self.commits.append(dict(offsets))

    def close(self):
        pass


class FakeBus(EventBus):
    """Collects dead letters instead of producing them."""

    def __init__(self, settings):
        super().__init__(settings)
        self.dead: list[tuple[ConsumerRecord, str]] = []
        self.flushes = 0

    def dead_letter(self, record: ConsumerRecord, reason: str, detail: str) -> None:
        self.dead.append((record, reason))

    def flush(self, timeout_s=None) -> None:
        self.flushes += 1


BROKEN = Rejection(Reason.BAD_JSON, "broken")


class FakeContextStore(ContextStore):
    """User contexts in a dict with OpenSearch's versioning rules; ``interfere`` bumps a user's version
    before the next save (another writer), ``fail_next`` makes the next save unreachable."""

    def __init__(self):
        self.index = "test-user-context"
        self.docs: dict[str, Stored] = {}
        self.interfere: set[str] = set()
        self.fail_next = 0
        self.saves = 0

    def load(self, user_ids):
        return {u: Stored(copy.deepcopy(self.docs[u].doc), self.docs[u].version) for u in user_ids if u in self.docs}

    def get(self, user_id):
        return copy.deepcopy(self.docs[user_id].doc) if user_id in self.docs else None

    def save(self, docs):
        if self.fail_next:
            self.fail_next -= 1
            raise SearchConnectionError("N/A", "connection refused", None)
        self.saves += 1
        for user_id in self.interfere:
            stored = self.docs[user_id]
            self.docs[user_id] = Stored(stored.doc, Version(stored.version.seq_no + 1, 1))
        self.interfere = set()
        written, lost = {}, []
        for user_id, (doc, version) in docs.items():
            current = self.docs.get(user_id)
            if (current.version if current else None) != version:
                lost.append(user_id)
                continue
            stored = Stored(copy.deepcopy(doc), Version(version.seq_no + 1 if version else 0, 1))
            self.docs[user_id] = stored
            written[user_id] = Stored(doc, stored.version)
        return written, lost
