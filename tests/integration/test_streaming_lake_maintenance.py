"""Maintenance with Spark's Iceberg procedures on tables the sink wrote: small files compacted, old
snapshots expired, and the sink still resumes exactly where it stopped."""

from __future__ import annotations

import threading
import time

import pytest

from hybridrec.contract import EVENTS
from hybridrec.lake import Lake
from hybridrec.streaming.maintenance import run_maintenance, snapshots_to_offsets
from hybridrec.streaming.replay import in_time_order, replay
from hybridrec.streaming.sink import build_sink, committed_offsets, offsets_lineage
from tests.integration.streaming_support import bus_for, make_world, tear_down

pytestmark = pytest.mark.integration


@pytest.fixture
def world(services, tmp_path):
    # Tiny batches make many small files; expiry of anything older than ~1s, keeping one snapshot (at
    # least: never fewer than reach back to the offsets).
    world = make_world(tmp_path / "world", "maint", n_events=6000, sink_batch_messages=300,
                       sink_flush_interval_ms=100, snapshot_max_age_h=0.0003, snapshots_retained=1,
                       compaction_min_input_files=2)
    yield world
    tear_down(world)


def sink_everything_produced(world) -> None:
    bus = bus_for(world)
    targets = bus.end_offsets([world.settings.kafka.events_topic, world.settings.kafka.queries_topic])
    build_sink(world.settings, instance_id="maint-0").run(threading.Event(), targets)


def wait_until_expirable(table, max_age_h: float) -> None:
    """Sleep until every snapshot of ``table`` is older than ``max_age_h``. The expiry cutoff is taken
    from the wall clock when maintenance starts, so without this whether the sink's snapshots can
    expire depends on how long the Spark session takes to come up (seconds from a cold JVM, well under
    the one-second maximum age once an earlier test in the process has started Spark)."""
    newest_ms = max(snapshot.timestamp_ms for snapshot in table.metadata.snapshots)
    expirable_at = (newest_ms + max_age_h * 3600 * 1000 + 10) / 1000
    time.sleep(max(0.0, expirable_at - time.time()))


def test_compaction_and_expiry_keep_exactly_once(world):
    half = world.recording.events.num_rows // 2
    bus = bus_for(world)
    replay(bus, in_time_order([world.recording.events.slice(0, half)], []), 0, None)
    sink_everything_produced(world)
    lake = Lake(world.settings)
    offsets_before = committed_offsets(lake.table(EVENTS))
    snapshots_before = {s.snapshot_id: s.timestamp_ms for s in lake.table(EVENTS).metadata.snapshots}
    wait_until_expirable(lake.table(EVENTS), world.settings.streaming.snapshot_max_age_h)

    report = run_maintenance(world.settings)["raw.events"]
    assert report["data_files_after"] < report["data_files_before"]
    table = lake.table(EVENTS)
    cutoff, retained = report["expired_older_than_ms"], report["snapshots_retained_at_least"]
    assert all(ts < cutoff for ts in snapshots_before.values())  # every sink snapshot was old enough to expire
    snapshots_after = {s.snapshot_id: s.timestamp_ms for s in table.metadata.snapshots}
    lineage = [snapshot.snapshot_id for snapshot, _ in offsets_lineage(table)]
    assert len(lineage) >= retained  # the retained ancestors are all still there ...
    # ... and of the sink's snapshots nothing else is; maintenance's own are newer than the cutoff.
    assert snapshots_after.keys() & snapshots_before.keys() == set(lineage[:retained]) & snapshots_before.keys()
    assert all(ts >= cutoff for sid, ts in snapshots_after.items() if sid not in snapshots_before)
    assert len(snapshots_after) < len(snapshots_before)
    assert snapshots_to_offsets(table) > 1  # compaction snapshots on top, the offsets snapshot kept
    assert committed_offsets(table) == offsets_before
    assert lake.count(EVENTS) == half

    replay(bus, in_time_order([world.recording.events.slice(half)], []), 0, None)
    bus.close()
    sink_everything_produced(world)
    ids = lake.scan(EVENTS, columns=("event_id",))["event_id"].to_pylist()
    assert len(ids) == len(set(ids)) == world.recording.events.num_rows
