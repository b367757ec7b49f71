"""Fault drills on the cluster topology, against real processes: a server of a cluster dies while the
project's own code runs on it, and the promises hold. Each drill's figures (events lost and doubled)
go to ``benchmarks/results/scale-drills.json``.

Drill 1: one Kafka broker (a controller too) is SIGKILLed while a replay produces and the lake sink
consumes; every event and query lands in Iceberg exactly once, the producer loses nothing (acks=all
with min.insync.replicas=2), and the restarted broker catches up with every partition's replicas.

Drill 4: the catalog's PostgreSQL server restarts while the sink commits; the sink waits it out and
every event and query still lands exactly once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from kafka.admin import KafkaAdminClient

from hybridrec.benchmarks import results_dir, write_result
from hybridrec.contract import EVENTS
from hybridrec.infra import manager
from hybridrec.infra.kafka import kafka_nodes
from hybridrec.infra.postgres import PostgresService
from hybridrec.lake import Lake
from hybridrec.streaming.replay import replay
from tests.integration.streaming_support import (
    StreamWorld, assert_landed_exactly_once, bus_for, make_cluster_world, start, stop, tear_down, wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

READY = "continuing where the lake stands"  # logged once a sink has its partitions and offsets
REPLAY_RATE = 400  # messages/s: the ~5,000 messages outlast the kill by several seconds
KILL_AFTER_S = 3.0
CATALOG_OUTAGE_S = 5.0  # PostgreSQL stays down this long: several of the sink's 0.5 s commits fall in it
RESULTS = "scale-drills"


@pytest.fixture(scope="module")
def drill_results(cluster):
    """Figures per drill, written (over the drills' earlier figures) when the module ends."""
    results: dict[str, dict] = {}
    yield results
    if results:
        path = results_dir() / f"{RESULTS}.json"
        drills = {**(json.loads(path.read_text()).get("drills", {}) if path.exists() else {}), **results}
        summed = {key: sum(d.get(key, 0) for d in drills.values()) for key in ("events_lost", "events_duplicated")}
        write_result(RESULTS, "scale_drills", "synthetic world (300 users, ~4,000 events) on the cluster topology",
                     "pytest tests/integration/test_cluster_topology_drills.py", {**summed, "drills": drills},
                     settings=cluster)


@pytest.fixture
def world(cluster, tmp_path):
    world = make_cluster_world(tmp_path / "world", "drill", n_events=4000,
                               streaming__sink_batch_messages=500, streaming__sink_flush_interval_ms=500)
    yield world
    tear_down(world)


def _replay_in_background(world: StreamWorld) -> tuple[threading.Thread, list[Exception]]:
    """The world's recording replayed at ``REPLAY_RATE`` by a thread; a failure lands in the list."""
    bus, failures = bus_for(world), []

    def produce() -> None:
        try:
            replay(bus, world.recording.messages(), REPLAY_RATE, None)
        except Exception as err:  # the test reports it
            failures.append(err)
        finally:
            bus.close()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    return producer, failures


def _under_replicated(settings, topics: list[str]) -> list[int]:
    """Partitions of ``topics`` with fewer in-sync replicas than configured."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap, client_id="test-drill")
    try:
        return [p["partition_index"] for t in admin.describe_topics(topics) for p in t["partitions"]
                if len(p["isr_nodes"]) < settings.kafka.replication_factor]
    finally:
        admin.close()


def test_a_broker_killed_mid_replay_loses_and_doubles_nothing(world, cluster, tmp_path, drill_results):
    k = world.settings.kafka
    log = tmp_path / "sink.log"
    sink = start(world, "sink", "--instance-id", "sink-0", log_path=log)
    victim = kafka_nodes(cluster)[1]
    try:
        wait_for(lambda: READY in log.read_text(), timeout_s=120, every_s=0.2, what="the sink to start")
        producer, failures = _replay_in_background(world)
        time.sleep(KILL_AFTER_S)
        pid = victim.status().pid
        assert pid is not None and producer.is_alive(), "the broker must die mid-replay"
        os.kill(pid, signal.SIGKILL)
        producer.join(timeout=300)
        assert not producer.is_alive() and not failures, failures

        lake = Lake(world.settings)
        expected_events = world.recording.events.num_rows
        wait_for(lambda: lake.count(EVENTS) >= expected_events, timeout_s=300, what="the sink to land the replay")
    finally:
        assert stop(sink) == 0, log.read_text()[-3000:]
    drill_results["kafka_broker_kill"] = assert_landed_exactly_once(world, lake)

    topics = [k.events_topic, k.queries_topic]
    wait_for(lambda: _under_replicated(world.settings, topics), timeout_s=60,
             what="the dead broker to leave the in-sync replicas")
    manager.up(cluster)  # restarts the dead node only; the others are left running
    wait_for(lambda: not _under_replicated(world.settings, topics), timeout_s=120,
             what="the restarted broker to catch up with every partition")


def test_postgres_restarted_while_the_sink_commits_costs_no_event(world, cluster, tmp_path, drill_results):
    log = tmp_path / "sink.log"
    postgres = PostgresService(cluster)
    sink = start(world, "sink", "--instance-id", "sink-0", log_path=log)
    try:
        wait_for(lambda: READY in log.read_text(), timeout_s=120, every_s=0.2, what="the sink to start")
        producer, failures = _replay_in_background(world)
        before = Lake(world.settings)
        wait_for(lambda: before.count(EVENTS) > 0, timeout_s=60, every_s=0.2, what="the sink's first commit")
        assert producer.is_alive(), "the catalog must go while the sink still has work to commit"
        postgres.down()  # a fast shutdown: every client's connection is cut, new ones are refused
        time.sleep(CATALOG_OUTAGE_S)
        postgres.up()
        producer.join(timeout=300)
        assert not producer.is_alive() and not failures, failures
        lake = Lake(world.settings)  # the pooled connections of ``before`` died with the server
        expected_events = world.recording.events.num_rows
        wait_for(lambda: lake.count(EVENTS) >= expected_events, timeout_s=300, what="the sink to land the replay")
    finally:
        assert stop(sink) == 0, log.read_text()[-3000:]
    assert "the catalog is unreachable" in log.read_text(), "no commit met the outage: nothing was drilled"
    drill_results["postgres_restart"] = assert_landed_exactly_once(world, lake)
