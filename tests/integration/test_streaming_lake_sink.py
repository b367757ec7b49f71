"""The lake sink against the real Kafka and Iceberg: SIGKILLed at random points during a replay it still
lands every event exactly once; malformed messages end in the dead-letter topic, never in the way."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from hybridrec.bus import (
    HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC, encode, headers_dict,
)
from hybridrec.contract import EVENTS, SEARCH_QUERIES
from hybridrec.lake import Lake
from hybridrec.streaming.replay import in_time_order, replay
from hybridrec.streaming.sink import build_sink, committed_offsets
from hybridrec.streaming.updater import build_updater
from hybridrec.streaming.vectors import NoItemVectors
from tests.integration.streaming_support import bus_for, kill, make_world, start, tear_down, wait_for

pytestmark = pytest.mark.integration

KILLS = 10
REPLAY_RATE = 350  # messages/s: the replay outlasts the kill rounds, so every kill lands mid-stream
READY = "continuing where the lake stands"  # logged once a sink has its partitions and offsets


@pytest.fixture
def world(services, tmp_path):
    world = make_world(tmp_path / "world", "sink", n_events=20_000, sink_batch_messages=1500,
                       sink_flush_interval_ms=300)
    yield world
    tear_down(world)


def _ids(lake: Lake, spec, column: str) -> list[str]:
    return lake.scan(spec, columns=(column,))[column].to_pylist()


def test_sigkilled_sink_lands_every_event_exactly_once(world, tmp_path):
    bus = bus_for(world)
    producer = threading.Thread(target=replay, args=(bus, world.recording.messages(),
                                                     REPLAY_RATE, None), daemon=True)
    producer.start()
    lake, rng = Lake(world.settings), random.Random(7)
    rows_after_kill = []
    for round_ in range(KILLS):
        log = tmp_path / f"sink-{round_}.log"
        sink = start(world, "sink", "--instance-id", "sink-0", log_path=log)
        wait_for(lambda: READY in log.read_text(), timeout_s=60, every_s=0.1, what=f"sink {round_} to start")
        time.sleep(rng.uniform(0.0, 2.5))  # polling, validating, writing parquet, committing: anywhere
        kill(sink)
        rows_after_kill.append(lake.count(EVENTS))
    producer.join(timeout=120)
    assert not producer.is_alive()
    bus.close()

    log = tmp_path / "sink-final.log"
    final = start(world, "sink", "--instance-id", "sink-0", "--until-caught-up", log_path=log)
    assert final.wait(timeout=180) == 0, log.read_text()[-3000:]

    events, queries = _ids(lake, EVENTS, "event_id"), _ids(lake, SEARCH_QUERIES, "query_id")
    expected_events = world.recording.events["event_id"].to_pylist()
    expected_queries = world.recording.queries["query_id"].to_pylist()
    assert len(events) == len(set(events)) == len(expected_events) and set(events) == set(expected_events)
    assert len(queries) == len(set(queries)) == len(expected_queries) and set(queries) == set(expected_queries)
    grew = sum(after > before for before, after in zip([0, *rows_after_kill], rows_after_kill))
    assert grew >= KILLS // 2, f"too few kills interrupted a sink that was making progress: {rows_after_kill}"
    ends = bus.end_offsets([world.settings.kafka.events_topic])
    assert committed_offsets(lake.table(EVENTS))[world.settings.kafka.events_topic] == {
        tp.partition: offset for tp, offset in ends.items()}


def _poison(world, now: datetime) -> list[tuple[str, str, bytes, str]]:
    """(topic kind, key, bytes, expected reason) for each way a message can be broken."""
    place, clip = world.recording.places[0], world.recording.clips[0]
    good = {"event_id": "bad", "user_id": "u-test-01", "item_id": place, "surface": "place", "event_type": "click",
            "ts": "2026-10-01T12:00:00Z"}

    def event(**changes) -> bytes:
        return json.dumps({k: v for k, v in {**good, **changes}.items() if v is not None}).encode()

    query = {"query_id": "qbad", "user_id": "u-test-01", "text": "sushi", "ts": "2026-10-01T12:00:00Z"}
    return [
        ("events", "u-test-01", b"{this is not json", "bad-json"),
        ("events", "u-test-02", b"\xff\xfe\x00\x01", "bad-json"),
        ("events", "u-test-03", b"[1, 2, 3]", "bad-json"),
        ("events", "u-test-04", event(event_type="purchase"), "unknown-value"),
        ("events", "u-test-05", event(user_id=None), "missing-field"),
        ("events", "u-test-06", event(dwell_ms="very long"), "wrong-type"),
        ("events", "u-test-07", event(ts="2026-10-01T12:00:00"), "wrong-type"),
        ("events", "u-test-08", event(item_id="p9999999"), "unknown-item"),
        ("events", "u-test-09", event(item_id=clip), "surface-mismatch"),
        ("events", "u-test-10", event(ts=(now + timedelta(days=1)).isoformat()), "future-timestamp"),
        ("events", "u-test-11", event(mood="great"), "unknown-field"),
        ("queries", "u-test-12", json.dumps({**query, "clicked_item_ids": ["c9999999"]}).encode(), "unknown-item"),
        ("queries", "u-test-13", json.dumps({k: v for k, v in query.items() if k != "text"}).encode(), "missing-field"),
    ]


def test_poison_messages_go_to_the_dead_letter_topic_and_good_ones_to_the_lake(world):
    k = world.settings.kafka
    topics = {"events": k.events_topic, "queries": k.queries_topic}
    good_events = world.recording.events.slice(0, 3000)
    poison = _poison(world, datetime.now(timezone.utc))
    rng = random.Random(3)
    good_queries = world.recording.queries.slice(0, 300)
    messages = [("good", kind, row) for kind, row in in_time_order([good_events], [good_queries])]
    for item in poison:
        messages.insert(rng.randrange(len(messages) + 1), ("bad", *item))
    bus = bus_for(world)
    for entry in messages:
        if entry[0] == "good":
            _, kind, row = entry
            bus.publish(topics[kind], row["user_id"], encode(row))
        else:
            _, kind, key, raw, _ = entry
            bus.publish(topics[kind], key, raw)
    bus.flush()
    targets = bus.end_offsets(topics.values())
    bus.close()

    summary = build_sink(world.settings).run(threading.Event(), targets)
    lake = Lake(world.settings)
    assert sorted(_ids(lake, EVENTS, "event_id")) == sorted(good_events["event_id"].to_pylist())
    assert summary["committed"] == len(messages) - len(poison)

    dead = _read_all(world, expected=len(poison))
    by_value = {record.value: headers_dict(record) for record in dead}
    # Dead letters are at least once (a rebalance can republish one); each is identified by its source.
    sources = {tuple(headers_dict(r)[h] for h in (HEADER_SOURCE_TOPIC, HEADER_SOURCE_PARTITION, HEADER_SOURCE_OFFSET))
               for r in dead}
    assert len(sources) == len(poison) and len(by_value) == len(poison)
    for kind, _, raw, reason in poison:
        headers = by_value[raw]  # the original bytes, untouched
        assert headers[HEADER_REASON] == reason and headers[HEADER_SOURCE_TOPIC] == topics[kind]
        assert int(headers[HEADER_SOURCE_OFFSET]) >= 0

    # The context updater reads the same topics: it counts the poison and carries on too.
    updater_summary = build_updater(world.settings, vectors=NoItemVectors()).run(threading.Event(), targets)
    assert sum(v for name, v in updater_summary.items() if name.startswith("rejected.")) == len(poison)
    assert updater_summary["applied"] == len(messages) - len(poison)


def _read_all(world, expected: int, timeout_s: float = 60):
    consumer = bus_for(world).consumer(f"{world.settings.streaming.sink_group}-dlq-reader")
    consumer.subscribe([world.settings.kafka.dead_letter_topic])
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records
