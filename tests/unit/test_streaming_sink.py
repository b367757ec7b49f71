"""The exactly-once lake sink against a real (temporary) Iceberg catalog, with Kafka replaced by a fake inbox."""

import json
import threading

import pytest
from kafka import TopicPartition
from pyiceberg.table.update import AddSnapshotUpdate
from sqlalchemy.exc import OperationalError

from hybridrec.contract import EVENTS, SEARCH_QUERIES
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run
from hybridrec.streaming.metrics import Metrics
from hybridrec.streaming.sink import DEAD_LETTERED_PROPERTY, OFFSETS_PROPERTY, LakeSink, committed_offsets
from hybridrec.streaming.validation import KnownItems
from tests.unit.streaming_fakes import BROKEN, FakeBus, FakeInbox, batch, event_message, raw_record

TOPIC, QUERIES = "ev", "q"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


@pytest.fixture
def lake(tmp_lake_settings):
    return Lake(tmp_lake_settings)


def make_sink(lake, settings, inbox, batch_messages=1000):
    bus = FakeBus(settings)
    sink = LakeSink(lake, bus, inbox, {TOPIC: EVENTS, QUERIES: SEARCH_QUERIES}, KnownItems({}),
                    new_run(settings, "test-sink"), Metrics("test"), batch_messages, flush_interval_ms=60_000)
    sink.prepare_tables()
    return sink, bus


def event_ids(lake):
    return sorted(lake.scan(EVENTS, columns=("event_id",))["event_id"].to_pylist())


def test_offsets_commit_with_the_rows_and_a_restart_resumes_there(lake, tmp_lake_settings):
    inbox = FakeInbox([P0, P1])
    sink, _ = make_sink(lake, tmp_lake_settings, inbox)
    inbox.batches.extend([batch(rebalanced=True),
                          batch([event_message(TOPIC, 0, o) for o in range(3)] + [event_message(TOPIC, 1, 0)])])
    sink.step()
    assert inbox.seeks == [(P0, None), (P1, None)]  # the lake has nothing yet: from the first message
    sink.step()
    sink.flush()
    assert lake.count(EVENTS) == 4
    assert committed_offsets(lake.table(EVENTS)) == {TOPIC: {0: 3, 1: 1}}
    assert inbox.commits[-1] == {P0: 3, P1: 1}  # Kafka learns only after the lake

    restarted = FakeInbox([P0, P1])
    sink, _ = make_sink(lake, tmp_lake_settings, restarted)
    restarted.batches.append(batch(rebalanced=True))
    sink.step()
    assert restarted.seeks == [(P0, 3), (P1, 1)]


def test_after_a_rebalance_messages_that_begin_at_the_lakes_offset_are_kept(lake, tmp_lake_settings):
    inbox = FakeInbox([P0, P1])
    sink, _ = make_sink(lake, tmp_lake_settings, inbox)
    inbox.batches.extend([batch(rebalanced=True), batch([event_message(TOPIC, 0, 0), event_message(TOPIC, 1, 0)])])
    sink.step()
    sink.step()
    sink.flush()
    restarted = FakeInbox([P0, P1])
    sink, _ = make_sink(lake, tmp_lake_settings, restarted)
    # Kafka's committed offsets put partition 0 where the lake is, partition 1 behind it.
    restarted.batches.append(batch([event_message(TOPIC, 0, 1), event_message(TOPIC, 1, 0)], rebalanced=True))
    sink.step()
    sink.flush()
    assert restarted.seeks == [(P1, 1)]
    assert event_ids(lake) == ["ev-0-0", "ev-0-1", "ev-1-0"]


def test_a_rebalance_drops_unflushed_work_and_repositions(lake, tmp_lake_settings):
    inbox = FakeInbox([P0])
    sink, _ = make_sink(lake, tmp_lake_settings, inbox)
    inbox.batches.extend([batch(rebalanced=True), batch([event_message(TOPIC, 0, 0)]),
                          batch([event_message(TOPIC, 0, 1)], rebalanced=True),
                          batch([event_message(TOPIC, 0, 0), event_message(TOPIC, 0, 1)])])
    for _ in range(4):
        sink.step()
    sink.flush()
    assert inbox.seeks == [(P0, None), (P0, None)]
    assert event_ids(lake) == ["ev-0-0", "ev-0-1"]


def test_a_redelivered_message_is_buffered_once(lake, tmp_lake_settings):
    inbox = FakeInbox([P0])
    sink, _ = make_sink(lake, tmp_lake_settings, inbox)
    inbox.batches.extend([batch(rebalanced=True), batch([event_message(TOPIC, 0, 0), event_message(TOPIC, 0, 1)]),
                          batch([event_message(TOPIC, 0, 1), event_message(TOPIC, 0, 2)])])
    for _ in range(3):
        sink.step()
    sink.flush()
    assert event_ids(lake) == ["ev-0-0", "ev-0-1", "ev-0-2"]


def test_a_batch_is_fenced_when_another_member_moved_the_partition_on(lake, tmp_lake_settings):
    inbox = FakeInbox([P0, P1])
    sink, _ = make_sink(lake, tmp_lake_settings, inbox)
    inbox.batches.extend([batch(rebalanced=True), batch([event_message(TOPIC, 0, 0), event_message(TOPIC, 1, 0)])])
    sink.step()
    sink.step()
    # Meanwhile a member that took over partition 0 committed its first two messages.
    other = FakeInbox([P0])
    successor, _ = make_sink(lake, tmp_lake_settings, other)
    other.batches.extend([batch(rebalanced=True), batch([event_message(TOPIC, 0, 0), event_message(TOPIC, 0, 1)])])
    successor.step()
    successor.step()
    successor.flush()

    sink.flush()
    assert event_ids(lake) == ["ev-0-0", "ev-0-1", "ev-1-0"]  # partition 0 not written twice
    assert committed_offsets(lake.table(EVENTS)) == {TOPIC: {0: 2, 1: 1}}
    assert inbox.seeks[-1] == (P0, 2)  # and we continue where the other member stopped
    assert sink.metrics.counters["lake.fenced"] == 1


def test_dead_letters_are_flushed_before_the_offsets_move_past_them(lake, tmp_lake_settings):
    inbox = FakeInbox([P0])
    sink, bus = make_sink(lake, tmp_lake_settings, inbox)
    inbox.batches.extend([batch(rebalanced=True),
                          batch([event_message(TOPIC, 0, 1)], [(raw_record(TOPIC, 0, 0), BROKEN)]),
                          batch([], [(raw_record(TOPIC, 0, 2), BROKEN)])])
    for _ in range(3):
        sink.step()
    sink.flush()
    assert [(r.offset, reason) for r, reason in bus.dead] == [(0, "bad-json"), (2, "bad-json")]
    assert bus.flushes == 1
    assert event_ids(lake) == ["ev-0-1"]
    props = lake.snapshot_properties(EVENTS)
    assert json.loads(props[OFFSETS_PROPERTY]) == {TOPIC: {"0": 3}} and props[DEAD_LETTERED_PROPERTY] == "2"


def test_offsets_are_found_behind_snapshots_without_them(lake, tmp_lake_settings):
    inbox = FakeInbox([P0])
    sink, _ = make_sink(lake, tmp_lake_settings, inbox)
    inbox.batches.extend([batch(rebalanced=True), batch([event_message(TOPIC, 0, 0)])])
    sink.step()
    sink.step()
    sink.flush()
    lake.append(EVENTS, [EVENTS.empty_arrow()], new_run(tmp_lake_settings, "compaction-like"))
    assert OFFSETS_PROPERTY not in lake.snapshot_properties(EVENTS)
    assert committed_offsets(lake.table(EVENTS)) == {TOPIC: {0: 1}}


def test_a_full_batch_flushes_by_itself(lake, tmp_lake_settings):
    inbox = FakeInbox([P0])
    sink, _ = make_sink(lake, tmp_lake_settings, inbox, batch_messages=2)
    inbox.batches.extend([batch(rebalanced=True), batch([event_message(TOPIC, 0, 0)]),
                          batch([event_message(TOPIC, 0, 1)])])
    for _ in range(3):
        sink.step()
    assert lake.count(EVENTS) == 2


def _server_gone(what: str) -> OperationalError:
    """What SQLAlchemy raises when the catalog's PostgreSQL server is restarting."""
    return OperationalError("UPDATE iceberg_tables ...", {}, Exception(what), connection_invalidated=True)


def _run_outage_sink(lake, settings, redeliveries=0, outage_s=30.0):
    """A sink run over messages 0 and 1 of partition 0, which the inbox hands out 1 + ``redeliveries`` times."""
    inbox = FakeInbox([P0])
    sink = LakeSink(lake, FakeBus(settings), inbox, {TOPIC: EVENTS, QUERIES: SEARCH_QUERIES}, KnownItems({}),
                    new_run(settings, "test-sink"), Metrics("test"), 1000, 60_000, catalog_outage_s=outage_s)
    inbox.batches.append(batch(rebalanced=True))
    for _ in range(1 + redeliveries):
        inbox.batches.append(batch([event_message(TOPIC, 0, 0), event_message(TOPIC, 0, 1)]))
    sink.run(threading.Event(), targets={P0: 2})
    return sink


def test_a_catalog_outage_during_a_rebalance_is_waited_out_and_the_rebalance_finished(
        lake, tmp_lake_settings, monkeypatch):
    load_table, refusals = lake.table, [_server_gone("connection refused")]

    def table(spec):
        if refusals and spec is EVENTS and lake.exists(EVENTS):
            raise refusals.pop()
        return load_table(spec)

    monkeypatch.setattr(lake, "table", table)
    # The outage hides where the lake stands when the partitions are assigned; the next batch is not where
    # the lake stands, so the sink seeks there (the inbox redelivers) instead of taking it as positioned.
    sink = _run_outage_sink(lake, tmp_lake_settings, redeliveries=1)
    assert not refusals and sink.metrics.counters["lake.catalog_unreachable"] == 1
    assert event_ids(lake) == ["ev-0-0", "ev-0-1"]


def test_a_commit_whose_answer_the_outage_lost_is_not_appended_again(lake, tmp_lake_settings, monkeypatch):
    commit_table, lost = lake.catalog.commit_table, []

    def commit_then_lose_the_answer(table, requirements, updates):
        response = commit_table(table, requirements, updates)
        if not lost and any(isinstance(update, AddSnapshotUpdate) for update in updates):  # an append
            lost.append(response)
            raise _server_gone("server closed the connection unexpectedly")
        return response

    monkeypatch.setattr(lake.catalog, "commit_table", commit_then_lose_the_answer)
    sink = _run_outage_sink(lake, tmp_lake_settings)
    assert lost and sink.metrics.counters["lake.fenced"] == 1  # the retry found its own commit in the lake
    assert event_ids(lake) == ["ev-0-0", "ev-0-1"]
    assert committed_offsets(lake.table(EVENTS)) == {TOPIC: {0: 2}}


def test_a_catalog_outage_longer_than_the_sinks_patience_stops_it(lake, tmp_lake_settings, monkeypatch):
    def table(spec):
        raise _server_gone("connection refused")

    monkeypatch.setattr(lake, "table", table)
    with pytest.raises(OperationalError):
        _run_outage_sink(lake, tmp_lake_settings, outage_s=0.0)
