"""Fault drills on the cluster topology, against real processes: a node of a cluster is SIGKILLed while
the project's own code runs on it, and the promises hold.

Drill 1: one Kafka broker (a controller too) dies while a replay produces and the lake sink consumes;
every event and query lands in Iceberg exactly once, the producer loses nothing (acks=all with
min.insync.replicas=2), and the restarted broker catches up with every partition's replicas."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from kafka.admin import KafkaAdminClient

from hybridrec.contract import EVENTS
from hybridrec.infra import manager
from hybridrec.infra.kafka import kafka_nodes
from hybridrec.lake import Lake
from hybridrec.streaming.replay import replay
from tests.integration.streaming_support import (
    assert_landed_exactly_once, bus_for, make_cluster_world, start, stop, tear_down, wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

READY = "continuing where the lake stands"  # logged once a sink has its partitions and offsets
REPLAY_RATE = 400  # messages/s: the ~5,000 messages outlast the kill by several seconds
KILL_AFTER_S = 3.0


@pytest.fixture
def world(cluster, tmp_path):
    world = make_cluster_world(tmp_path / "world", "drill-kafka", n_events=4000,
                               streaming__sink_batch_messages=500, streaming__sink_flush_interval_ms=500)
    yield world
    tear_down(world)


def _under_replicated(settings, topics: list[str]) -> list[int]:
    """Partitions of ``topics`` with fewer in-sync replicas than configured."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap, client_id="test-drill")
    try:
        return [p["partition_index"] for t in admin.describe_topics(topics) for p in t["partitions"]
                if len(p["isr_nodes"]) < settings.kafka.replication_factor]
    finally:
        admin.close()


def test_a_broker_killed_mid_replay_loses_and_doubles_nothing(world, cluster, tmp_path):
    k = world.settings.kafka
    log = tmp_path / "sink.log"
    sink = start(world, "sink", "--instance-id", "sink-0", log_path=log)
    victim = kafka_nodes(cluster)[1]
    try:
        wait_for(lambda: READY in log.read_text(), timeout_s=120, every_s=0.2, what="the sink to start")
        bus, failures = bus_for(world), []

        def produce() -> None:
            try:
                replay(bus, world.recording.messages(), REPLAY_RATE, None)
            except Exception as err:  # the assertion below reports it
                failures.append(err)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        time.sleep(KILL_AFTER_S)
        pid = victim.status().pid
        assert pid is not None and producer.is_alive(), "the broker must die mid-replay"
        os.kill(pid, signal.SIGKILL)
        producer.join(timeout=300)
        assert not producer.is_alive() and not failures, failures
        bus.close()

        lake = Lake(world.settings)
        expected_events = world.recording.events["event_id"].to_pylist()
        wait_for(lambda: lake.count(EVENTS) >= len(expected_events), timeout_s=300, what="the sink to land the replay")
    finally:
        assert stop(sink) == 0, log.read_text()[-3000:]

    assert_landed_exactly_once(world, lake)

    topics = [k.events_topic, k.queries_topic]
    wait_for(lambda: _under_replicated(world.settings, topics), timeout_s=60,
             what="the dead broker to leave the in-sync replicas")
    manager.up(cluster)  # restarts the dead node only; the others are left running
    wait_for(lambda: not _under_replicated(world.settings, topics), timeout_s=120,
             what="the restarted broker to catch up with every partition")
