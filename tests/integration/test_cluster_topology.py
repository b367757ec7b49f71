"""The cluster topology (`infra.topology: cluster`): 3 Kafka KRaft nodes, 3 OpenSearch nodes, a Spark
standalone master with 2 workers and a PostgreSQL Iceberg catalog, all real processes on loopback,
brought up by the same `infra up` and running the same code as the single-node default: a replay
lands in Iceberg exactly once through the sink, Spark jobs run on the workers' executors, item
indices are published with a replica on another node. Everything it started is down afterwards."""

from __future__ import annotations

import threading

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from hybridrec.batch.interactions import TimeSplit, last_event_day, write_interactions
from hybridrec.batch.jobs import spark_event_summary
from hybridrec.config import load_settings
from hybridrec.contract import EVENTS, INTERACTIONS
from hybridrec.infra import manager
from hybridrec.infra.opensearch import http_json
from hybridrec.infra.spark_standalone import master_state
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run
from hybridrec.spark import spark_job
from hybridrec.streaming.replay import replay
from tests.integration.streaming_support import (
    assert_landed_exactly_once, bus_for, make_cluster_world, publish_vectors, start, stop, tear_down, wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

READY = "continuing where the lake stands"  # logged once a sink has its partitions and offsets


@pytest.fixture(scope="module")
def world(cluster, tmp_path_factory):
    world = make_cluster_world(tmp_path_factory.mktemp("cluster-world"), "cluster", n_events=4000,
                               retrain__label_days=1)
    assert world.settings.catalog_uri == cluster.catalog_uri
    yield world
    tear_down(world)


def test_every_engine_runs_its_configured_nodes(cluster):
    statuses = {s.name: s for s in manager.status(cluster)}
    expected = {"kafka-1", "kafka-2", "kafka-3", "opensearch-1", "opensearch-2", "opensearch-3", "postgres",
                "spark-master", "spark-worker-1", "spark-worker-2", "spark+iceberg"}
    assert set(statuses) == expected and all(s.healthy for s in statuses.values()), statuses
    assert len({s.pid for s in statuses.values() if s.pid}) == len(expected) - 1  # every node its own process

    admin = KafkaAdminClient(bootstrap_servers=cluster.kafka.bootstrap, client_id="test-cluster")
    try:
        assert len(admin.describe_cluster()["brokers"]) == 3
    finally:
        admin.close()
    health = http_json(f"{cluster.opensearch.url}/_cluster/health")
    assert health["number_of_nodes"] == 3 and health["status"] in ("green", "yellow")
    workers = [w for w in master_state(cluster)["workers"] if w["state"] == "ALIVE"]
    assert len(workers) == 2


def test_topics_are_replicated_with_a_write_quorum(world):
    admin = KafkaAdminClient(bootstrap_servers=world.settings.kafka.bootstrap, client_id="test-cluster")
    try:
        topic = world.settings.kafka.events_topic
        [description] = admin.describe_topics([topic])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    assert len(description["partitions"]) == 12
    assert all(len(p["replica_nodes"]) == 3 and len(p["isr_nodes"]) == 3 for p in description["partitions"])
    assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2"


def test_replay_lands_in_iceberg_on_postgres_exactly_once(world, tmp_path):
    log = tmp_path / "sink.log"
    sink = start(world, "sink", "--instance-id", "sink-0", log_path=log)
    try:
        wait_for(lambda: READY in log.read_text(), timeout_s=120, every_s=0.2, what="the sink to start")
        bus, failures = bus_for(world), []

        def produce() -> None:
            try:
                replay(bus, world.recording.messages(), 2000, None)
            except Exception as err:  # a producer that died quietly would look like a sink that lost everything
                failures.append(err)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        producer.join(timeout=120)
        assert not producer.is_alive() and not failures, failures
        bus.close()
        lake = Lake(world.settings)
        expected_events = world.recording.events["event_id"].to_pylist()
        wait_for(lambda: lake.count(EVENTS) >= len(expected_events), timeout_s=180, what="the sink to land the replay")
    finally:
        assert stop(sink) == 0, log.read_text()[-3000:]

    assert_landed_exactly_once(world, lake)


def test_spark_jobs_run_on_the_standalone_workers(world):
    """The project's Spark steps, unchanged, on executors in the workers' JVMs and the JDBC catalog on PostgreSQL."""
    lake = Lake(world.settings)
    landed = lake.count(EVENTS)
    assert landed > 0, "runs after the replay test"
    summary = spark_event_summary(world.settings)
    assert sum(row["events"] for row in summary) == landed

    # CI runs single-node modules first: a driver JVM launched for the SQLite catalog lacks PostgreSQL's
    # JDBC driver ("No suitable driver"), so the sessions below must not be handed that JVM.
    with spark_job(load_settings(), "test-cluster-after-sqlite") as spark:
        assert spark.range(3).count() == 3
    lake.table(INTERACTIONS)  # created by pyiceberg, written by Spark
    run = new_run(world.settings, "test-cluster-interactions")
    with spark_job(world.settings, "test-cluster-interactions") as spark:
        assert spark.sparkContext.master == world.settings.spark.master
        split = TimeSplit.ending_at(last_event_day(spark), world.settings.retrain.label_days)
        rows = write_interactions(spark, world.settings.retrain, world.settings.signals, split, run)
        executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1  # less the driver
    assert executors == 2
    written = lake.scan(INTERACTIONS, row_filter=f"run_id == '{run.run_id}'", columns=("user_id",))
    assert rows == written.num_rows > 0


def test_published_indices_keep_a_replica_on_another_node(world):
    publish_vectors(world)
    client_url = world.settings.opensearch.url
    http_json(f"{client_url}/_cluster/health?wait_for_status=green&timeout=60s", timeout_s=70)
    prefix = f"{world.settings.opensearch.index_prefix}-{world.settings.streaming.item_vectors_alias.split('{')[0]}"
    shards = [s for s in http_json(f"{client_url}/_cat/shards?format=json") if s["index"].startswith(prefix)]
    assert shards, f"no shards of {prefix}*"
    by_index: dict[str, list[dict]] = {}
    for shard in shards:
        by_index.setdefault(shard["index"], []).append(shard)
    for index, copies in by_index.items():
        assert sorted(c["prirep"] for c in copies) == ["p", "r"] and all(c["state"] == "STARTED" for c in copies)
        assert len({c["node"] for c in copies}) == 2, f"{index}: primary and replica on one node"
