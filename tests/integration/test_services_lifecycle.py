"""Kafka and OpenSearch as `infra up` runs them: idempotent start, health, and real client round trips."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from opensearchpy import OpenSearch

from hybridrec.infra import manager
from hybridrec.infra.kafka import ensure_topics

pytestmark = pytest.mark.integration


def test_up_twice_is_idempotent(services):
    before = {s.name: s.pid for s in manager.status(services)}
    again = manager.up(services)
    assert {s.name: s.pid for s in again} == before
    assert all(s.running and s.healthy for s in again)


def test_status_reports_each_service_healthy(services):
    statuses = {s.name: s for s in manager.status(services)}
    kafka, opensearch = statuses["kafka"], statuses["opensearch"]
    assert kafka.healthy and kafka.port == services.kafka.port and kafka.pid
    assert opensearch.healthy and opensearch.port == services.opensearch.port and opensearch.pid
    assert "opensearch-knn" in opensearch.detail
    assert kafka.log.exists() and opensearch.log.exists()


def test_project_topics_exist_with_configured_partitions(services):
    k = services.kafka
    topics = [k.events_topic, k.queries_topic, k.dead_letter_topic]
    assert ensure_topics(services) == []  # created by `up`; a second call changes nothing
    admin = KafkaAdminClient(bootstrap_servers=k.bootstrap)
    try:
        described = admin.describe_topics(topics)
    finally:
        admin.close()
    assert {t["name"]: len(t["partitions"]) for t in described} == {name: k.partitions for name in topics}


def test_kafka_produce_consume_round_trip(services):
    bootstrap = services.kafka.bootstrap
    topic = f"hybridrec.test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=10_000)
    try:
        sent = producer.send(topic, key=b"user-1", value=b'{"event": "view"}').get(timeout=10)
        consumer.assign([TopicPartition(topic, sent.partition)])
        consumer.seek(TopicPartition(topic, sent.partition), sent.offset)
        record = next(iter(consumer))
        assert (record.key, record.value, record.offset) == (b"user-1", b'{"event": "view"}', sent.offset)
    finally:
        producer.close()
        consumer.close()
        admin.delete_topics([topic])
        admin.close()


def test_opensearch_lucene_knn_finds_the_nearest_vector(services):
    client = OpenSearch(hosts=[services.opensearch.url])
    index = f"{services.opensearch.index_prefix}-test-knn-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=index, body={
        "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {"properties": {
            "name": {"type": "keyword"},
            "embedding": {"type": "knn_vector", "dimension": 3, "method": {
                "name": "hnsw", "engine": "lucene", "space_type": "cosinesimil",
                "parameters": {"m": 16, "ef_construction": 100}}},
        }},
    })
    try:
        vectors = {"north": [0.0, 1.0, 0.0], "east": [1.0, 0.0, 0.0], "up": [0.0, 0.0, 1.0],
                   "north-east": [1.0, 1.0, 0.0]}
        for name, vector in vectors.items():
            client.index(index=index, id=name, body={"name": name, "embedding": vector})
        client.indices.refresh(index=index)
        mapping = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]["embedding"]
        assert mapping["method"]["engine"] == "lucene"
        result = client.search(index=index, body={
            "size": 2, "query": {"knn": {"embedding": {"vector": [0.1, 0.9, 0.0], "k": 2}}}})
        assert [hit["_id"] for hit in result["hits"]["hits"]] == ["north", "north-east"]
    finally:
        client.indices.delete(index=index)
