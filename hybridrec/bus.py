"""The event bus: Kafka behind one small interface (kafka-python).

Messages are JSON objects of the data contract, keyed by user id so that one user's events land on
one partition and stay in order. The producer waits for every in-sync replica (``acks=all``) and is
idempotent, so its own retries never duplicate a message; a send that still fails is raised by
:meth:`EventBus.flush`, never dropped silently. Consumers never auto-commit: each one decides what
"done" means (the lake sink commits offsets inside Iceberg snapshots, the context updater after its
writes). A message that breaks the contract goes to the dead-letter topic with its original key and
bytes and the reason in headers, so it can be inspected and replayed once fixed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import UnknownTopicOrPartitionError

from hybridrec.config import Settings

log = logging.getLogger(__name__)

# Dead-letter headers: why the message was rejected and where it came from (dedupe key on redelivery).
HEADER_REASON = "reason"
HEADER_DETAIL = "detail"
HEADER_SOURCE_TOPIC = "source-topic"
HEADER_SOURCE_PARTITION = "source-partition"
HEADER_SOURCE_OFFSET = "source-offset"


class DeliveryError(RuntimeError):
    """A produced message was not acknowledged by the broker (after the producer's own retries)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"refusing to encode a timestamp without time zone: {value!r}")
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode(row: Mapping[str, Any]) -> bytes:
    """One contract row as compact JSON: timestamps ISO-8601 in UTC, null fields left out."""
    return json.dumps({k: v for k, v in row.items() if v is not None}, default=_json_default,
                      ensure_ascii=False, separators=(",", ":")).encode()


def user_key(user_id: str) -> bytes:
    """The partitioning key: all of a user's messages share a partition, hence an order."""
    return user_id.encode()


def headers_dict(record: ConsumerRecord) -> dict[str, str]:
    return {key: value.decode(errors="replace") for key, value in (record.headers or [])}


class EventBus:
    """The producer (created on first use), consumers and end offsets of one Kafka cluster."""

    def __init__(self, settings: Settings, client_id: str = "hybridrec"):
        self.settings = settings
        self.client_id = client_id
        self._producer: KafkaProducer | None = None
        self._send_error: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka.bootstrap

    @property
    def producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-producer",
                    acks="all", enable_idempotence=True, linger_ms=5, batch_size=256 * 1024,
                    max_request_size=4 * 1024 * 1024)
            return self._producer

    def publish(self, topic: str, user_id: str, value: bytes) -> None:
        """Queue one message keyed by ``user_id``; delivery failures surface on :meth:`flush`."""
        self.producer.send(topic, key=user_key(user_id), value=value).add_errback(self._on_send_error)

    def dead_letter(self, record: ConsumerRecord, reason: str, detail: str) -> None:
        """Publish a rejected message's original key and bytes to the dead-letter topic, with why and whence."""
        headers = [
            (HEADER_REASON, reason.encode()),
            (HEADER_DETAIL, detail[:1000].encode()),
            (HEADER_SOURCE_TOPIC, record.topic.encode()),
            (HEADER_SOURCE_PARTITION, str(record.partition).encode()),
            (HEADER_SOURCE_OFFSET, str(record.offset).encode()),
        ]
        self.producer.send(self.settings.kafka.dead_letter_topic, key=record.key, value=record.value,
                           headers=headers).add_errback(self._on_send_error)

    def _on_send_error(self, error: BaseException) -> None:
        log.error("message not delivered: %s", error)
        self._send_error = self._send_error or error

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued message is acknowledged; raise if any was not."""
        if self._producer is not None:
            self._producer.flush(timeout=timeout_s)
        if self._send_error is not None:
            error, self._send_error = self._send_error, None
            raise DeliveryError(f"a message was not delivered: {error}") from error

    def consumer(self, group_id: str, instance_id: str | None = None, **overrides: Any) -> KafkaConsumer:
        """A group member that commits only when told to. ``instance_id`` makes the membership static:
        a restarted instance reclaims its partitions at once instead of waiting out a rebalance."""
        config: dict[str, Any] = dict(
            bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-{instance_id or 'consumer'}",
            group_id=group_id, group_instance_id=instance_id, enable_auto_commit=False,
            auto_offset_reset="earliest", allow_auto_create_topics=False,
            session_timeout_ms=self.settings.streaming.session_timeout_ms,
            heartbeat_interval_ms=max(1000, self.settings.streaming.session_timeout_ms // 4),
        )
        config.update(overrides)
        return KafkaConsumer(**config)

    def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        """The next offset to be written on every partition of ``topics`` (a "caught up" target)."""
        probe = KafkaConsumer(bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-probe",
                              enable_auto_commit=False)
        try:
            partitions = [TopicPartition(topic, p) for topic in topics
                          for p in sorted(probe.partitions_for_topic(topic) or ())]
            return probe.end_offsets(partitions) if partitions else {}
        finally:
            probe.close()

    def close(self, timeout_s: float | None = None) -> None:
        """Deliver what is queued and stop the producer's network thread (a live one keeps refreshing metadata)."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout_s)


def delete_topics(settings: Settings, names: Iterable[str]) -> None:
    """Delete topics (tests' and benchmarks' own); creating them is ``infra.kafka.ensure_topics``."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap, client_id="hybridrec-bus-admin")
    try:
        admin.delete_topics(list(names))
    except UnknownTopicOrPartitionError:
        pass
    finally:
        admin.close()
