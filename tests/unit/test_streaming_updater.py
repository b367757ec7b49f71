"""The context updater's loop: write before commit, races, outages, rebalances (no services)."""

import threading

import numpy as np
from kafka import TopicPartition

from hybridrec.config import Settings
from hybridrec.streaming.context import ContextFolder, ContextRules
from hybridrec.streaming.metrics import Metrics
from hybridrec.models.extraction.rules import RuleQueryReader
from hybridrec.streaming.updater import ContextUpdater
from hybridrec.streaming.validation import KnownItems
from hybridrec.streaming.vectors import StaticItemVectors
from tests.unit.streaming_fakes import FakeContextStore, FakeInbox, batch, event_message

TOPIC = "ev"
P0 = TopicPartition(TOPIC, 0)


def make_updater(store, inbox, vectors=None, cache_users=100):
    folder = ContextFolder(ContextRules.from_settings(Settings()), RuleQueryReader(), TOPIC, "q")
    return ContextUpdater(inbox, store, folder, vectors or StaticItemVectors({}), KnownItems({}), Metrics("test"),
                          cache_users=cache_users, commit_interval_ms=0)


def test_offsets_are_committed_after_the_contexts_are_written():
    store, inbox = FakeContextStore(), FakeInbox([P0])
    updater = make_updater(store, inbox, StaticItemVectors({("clip", "c1"): np.ones(4)}))
    inbox.batches.append(batch([event_message(TOPIC, 0, 0, "u1", "c1"), event_message(TOPIC, 0, 1, "u2", "c2"),
                                event_message(TOPIC, 0, 2, "u1", "c3", "skip")]))
    updater.step(threading.Event())
    assert inbox.commits == [{P0: 3}]
    assert store.get("u1")["events_applied"] == 2 and store.get("u1")["interest"]["vector"] == [1.0] * 4
    assert store.saves == 1  # one bulk write per batch


def test_a_lost_race_is_refolded_on_the_winners_document():
    store, inbox = FakeContextStore(), FakeInbox([P0])
    updater = make_updater(store, inbox)
    inbox.batches.extend([batch([event_message(TOPIC, 0, 0, "u1", "c1")]),
                          batch([event_message(TOPIC, 0, 1, "u1", "c2")])])
    updater.step(threading.Event())
    store.interfere = {"u1"}  # someone else wrote u1 since we cached it
    updater.step(threading.Event())
    assert store.get("u1")["events_applied"] == 2
    assert updater.metrics.counters["contexts.races"] == 1


def test_an_outage_is_retried_without_losing_or_doubling_updates():
    store, inbox = FakeContextStore(), FakeInbox([P0])
    updater = make_updater(store, inbox)
    inbox.batches.extend([batch([event_message(TOPIC, 0, 0, "u1", "c1")]),
                          batch([event_message(TOPIC, 0, 1, "u1", "c2")])])
    updater.step(threading.Event())
    store.fail_next = 2
    stop = threading.Event()
    stop.wait = lambda timeout=None: False  # no real backoff in a unit test
    updater.step(stop)
    assert store.get("u1")["events_applied"] == 2 and inbox.commits[-1] == {P0: 2}


def test_stopping_during_an_outage_leaves_the_batch_uncommitted():
    store, inbox = FakeContextStore(), FakeInbox([P0])
    updater = make_updater(store, inbox)
    inbox.batches.append(batch([event_message(TOPIC, 0, 0, "u1", "c1")]))
    store.fail_next = 1
    stop = threading.Event()
    stop.wait = lambda timeout=None: stop.set()
    updater.step(stop)
    assert store.get("u1") is None and inbox.commits == []


def test_a_rebalance_drops_the_cache():
    store, inbox = FakeContextStore(), FakeInbox([P0])
    updater = make_updater(store, inbox)
    inbox.batches.extend([batch([event_message(TOPIC, 0, 0, "u1")]),
                          batch([event_message(TOPIC, 0, 1, "u1")], rebalanced=True)])
    updater.step(threading.Event())
    updater.step(threading.Event())
    assert updater.metrics.counters["contexts.read"] == 2  # read again after the rebalance, not served from cache


def test_run_until_caught_up_stops_at_the_targets():
    store, inbox = FakeContextStore(), FakeInbox([P0])
    updater = make_updater(store, inbox)
    inbox.batches.extend([batch([event_message(TOPIC, 0, o, f"u{o}") for o in range(3)])])
    summary = updater.run(threading.Event(), targets={P0: 3})
    assert summary["applied"] == 3 and inbox.commits[-1] == {P0: 3}
