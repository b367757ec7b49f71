"""User contexts against the real Kafka and OpenSearch: two updaters in one group, SIGKILLed at random
points while a replay runs, still end with every user's context exactly as one clean pass would
build it (nothing lost, nothing applied twice); and a new event is visible to serving within a second."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timezone

import numpy as np
import pytest

from hybridrec.bus import encode
from hybridrec.contract import EventRecord, SearchQueryRecord
from hybridrec.streaming.context import ContextFolder, ContextRules
from hybridrec.streaming.context_store import ContextStore
from hybridrec.streaming.inbox import Message
from hybridrec.streaming.replay import replay
from hybridrec.models.extraction.rules import RuleQueryReader
from hybridrec.streaming.updater import build_updater
from tests.integration.streaming_support import (
    bus_for, kill, make_world, publish_vectors, start, stop, tear_down, wait_for,
)

pytestmark = pytest.mark.integration

KILLS = 10
REPLAY_RATE = 300  # messages/s, so the replay outlasts the kill rounds


@pytest.fixture
def world(services, tmp_path):
    world = make_world(tmp_path / "world", "ctx", n_events=20_000)
    yield world
    tear_down(world)


def expected_contexts(world, vectors) -> dict[str, dict]:
    """One clean, in-order pass over everything replayed."""
    k = world.settings.kafka
    folder = ContextFolder(ContextRules.from_settings(world.settings), RuleQueryReader(),
                           k.events_topic, k.queries_topic)
    docs: dict[str, dict] = {}
    for offset, (kind, row) in enumerate(world.recording.messages()):
        model, topic = (EventRecord, k.events_topic) if kind == "events" else (SearchQueryRecord, k.queries_topic)
        record = model.model_validate_json(encode(row))
        message = Message(topic, 0, offset, 0, record)
        docs[record.user_id] = folder.fold(docs.get(record.user_id), record.user_id, [message], vectors)
    return docs


def _comparable(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("offsets", "updated_at_ms")}


def _totals(store: ContextStore) -> tuple[int, int]:
    store.client.indices.refresh(index=store.index)
    sums = {"events": {"sum": {"field": "events_applied"}}, "queries": {"sum": {"field": "queries_applied"}}}
    aggs = store.client.search(index=store.index, body={"size": 0, "aggs": sums})["aggregations"]
    return int(aggs["events"]["value"]), int(aggs["queries"]["value"])


def test_sigkilled_updaters_lose_no_update_and_apply_none_twice(world, tmp_path):
    vectors = publish_vectors(world)
    bus = bus_for(world)
    producer = threading.Thread(target=replay, args=(bus, world.recording.messages(), REPLAY_RATE, None),
                                daemon=True)
    producer.start()
    rng, launches = random.Random(11), 0

    def launch(member: str):
        nonlocal launches
        launches += 1
        log = tmp_path / f"{member}-{launches}.log"
        process = start(world, "context", "--instance-id", member, log_path=log)
        joined = f"assigned {world.settings.kafka.events_topic}"  # logged once it has partitions
        wait_for(lambda: joined in log.read_text(), timeout_s=60, every_s=0.1, what=f"{member} to join")
        return process

    members = {"ctx-0": launch("ctx-0")}
    for round_ in range(KILLS):
        if round_ == 3:
            members["ctx-1"] = launch("ctx-1")  # the group grows: partitions move between live members
        victim = rng.choice(sorted(members))
        time.sleep(rng.uniform(0.0, 2.5))
        kill(members[victim])
        members[victim] = launch(victim)
    producer.join(timeout=180)
    assert not producer.is_alive()
    bus.close()

    store = ContextStore.from_settings(world.settings)
    wanted = (world.recording.events.num_rows, world.recording.queries.num_rows)
    wait_for(lambda: _totals(store) == wanted, timeout_s=120, every_s=1.0, what=f"contexts to total {wanted}")
    for process in members.values():
        assert stop(process) == 0

    expected = expected_contexts(world, vectors)
    stored = store.load(expected)
    assert set(stored) == set(expected)
    differing = [user for user, doc in expected.items() if _comparable(stored[user].doc) != _comparable(doc)]
    assert not differing, f"{len(differing)} contexts differ from a clean pass, e.g. {differing[:3]}"
    assert any("interest" in doc for doc in expected.values())


def _newest_engaged(doc: dict | None) -> str | None:
    return doc["engaged"][0]["item_id"] if doc and doc["engaged"] else None


def test_a_new_event_is_visible_to_serving_within_a_second(world):
    stop_updater = threading.Event()
    updater = build_updater(world.settings, instance_id="fresh-0")
    thread = threading.Thread(target=updater.run, args=(stop_updater,), daemon=True)
    thread.start()
    bus, serving = bus_for(world), ContextStore.from_settings(world.settings)
    k = world.settings.kafka
    try:
        latencies = []
        for i in range(20):
            user = f"probe-{i % 4}"
            clip = world.recording.clips[i]
            event = {"event_id": f"probe-{i}", "user_id": user, "item_id": clip, "surface": "clip",
                     "event_type": "like", "ts": datetime.now(timezone.utc)}
            sent = time.perf_counter()
            bus.publish(k.events_topic, user, encode(event))
            bus.flush()
            wait_for(lambda: _newest_engaged(serving.get(user)) == clip, timeout_s=30, every_s=0.01, what=f"probe {i}")
            latencies.append(time.perf_counter() - sent)
    finally:
        stop_updater.set()
        thread.join(timeout=30)
        bus.close()
    assert float(np.median(latencies[5:])) < 1.0, latencies  # the first ones include joining the group
