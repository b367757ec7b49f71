"""Events and search queries from clients into Kafka, validated against the contract, keyed by user.

An event without an experiment variant gets the user's assigned one, so the experiment report can
attribute engagement even to clients that do not echo the feed response's variant.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

from kafka.errors import KafkaError

from hybridrec.bus import DeliveryError, EventBus, encode
from hybridrec.config import ExperimentVariant, Settings
from hybridrec.contract import EventRecord, SearchQueryRecord
from hybridrec.serving.metrics import ServingMetrics


OTHER_ARM = "other"


class WriteUnavailable(RuntimeError):
    """Kafka did not acknowledge the batch: the client should retry it (nothing was half-accepted silently)."""


def _require_time_zone(records: Sequence, field: str, kind: str) -> None:
    for n, record in enumerate(records):
        if getattr(record, field).tzinfo is None:
            raise ValueError(f"{kind}[{n}].{field}: timestamp needs a time zone (e.g. ...Z or +09:00)")


class EventWriter:
    def __init__(self, settings: Settings, variant_of: Callable[[str], ExperimentVariant], metrics: ServingMetrics):
        self.settings, self.variant_of, self.metrics = settings, variant_of, metrics
        self.bus = EventBus(settings, client_id="hybridrec-serving")
        self._arms = frozenset(v.name for v in settings.serving.experiments)

    def _produce(self, topic: str, rows: list[tuple[str, bytes]], kind: str) -> int:
        try:
            for user_id, value in rows:
                self.bus.publish(topic, user_id, value)
            self.bus.flush(timeout_s=self.settings.serving.kafka_timeout_s)
        except (KafkaError, DeliveryError) as err:
            raise WriteUnavailable(f"Kafka did not accept the {kind}: {err}") from err
        self.metrics.events.labels(kind).inc(len(rows))
        return len(rows)

    def events(self, events: Sequence[EventRecord]) -> int:
        _require_time_zone(events, "ts", "events")
        rows, arms = [], []
        for event in events:
            row = event.model_dump()
            row["experiment_variant"] = row.get("experiment_variant") or self.variant_of(event.user_id).name
            rows.append((event.user_id, encode(row)))
            arms.append((row["experiment_variant"] if row["experiment_variant"] in self._arms else OTHER_ARM,
                         row["event_type"]))
        accepted = self._produce(self.settings.kafka.events_topic, rows, "events")
        for arm, event_type in arms:  # labels stay bounded: a client's unknown arm name counts as "other"
            self.metrics.arm_events.labels(arm, event_type).inc()
        return accepted

    def queries(self, queries: Sequence[SearchQueryRecord]) -> int:
        _require_time_zone(queries, "ts", "queries")
        rows = [(q.user_id, encode(q.model_dump())) for q in queries]
        return self._produce(self.settings.kafka.queries_topic, rows, "queries")

    def close(self) -> None:
        self.bus.close(timeout_s=self.settings.serving.kafka_timeout_s)

    def reachable(self) -> bool:
        """A TCP connect to any bootstrap broker: cheap enough for a readiness probe, and a cluster with
        one node down still takes writes."""
        for port, _ in self.settings.kafka.node_ports:
            try:
                with socket.create_connection((self.settings.kafka.host, port), timeout=1.0):
                    return True
            except OSError:
                continue
        return False
