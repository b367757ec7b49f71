"""The lake on a real pyiceberg SQL catalog in a temporary folder (no services needed)."""

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from pyiceberg.exceptions import CommitFailedException
from sqlalchemy.exc import OperationalError, ProgrammingError

from hybridrec.contract import EVENTS, USERS
from hybridrec.lake import Lake, catalog_unreachable
from hybridrec.runinfo import new_run

T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)


def _events(start: int, n: int):
    return EVENTS.to_arrow({
        "event_id": [f"e{i}" for i in range(start, start + n)],
        "user_id": [f"u{i % 3}" for i in range(start, start + n)],
        "item_id": [f"c{i % 5}" for i in range(start, start + n)],
        "surface": ["clip"] * n,
        "event_type": ["view"] * n,
        "ts": [T0 + timedelta(hours=i) for i in range(start, start + n)],
    })


@pytest.fixture
def lake(tmp_lake_settings):
    return Lake(tmp_lake_settings)


def test_replace_is_idempotent_and_stamped(lake, tmp_lake_settings):
    run = new_run(tmp_lake_settings, "test")
    assert lake.replace(EVENTS, [_events(0, 30), _events(30, 20)], run) == 50
    assert lake.replace(EVENTS, [_events(0, 30), _events(30, 20)], run) == 50
    assert lake.count(EVENTS) == 50
    props = lake.snapshot_properties(EVENTS)
    assert props["hybridrec.run-id"] == run.run_id and props["hybridrec.config-hash"] == tmp_lake_settings.config_hash()
    assert props["hybridrec.model-config-hash"] == tmp_lake_settings.model_config_hash()


def test_events_land_in_day_partitions(lake, tmp_lake_settings):
    lake.replace(EVENTS, [_events(0, 72)], new_run(tmp_lake_settings, "test"))
    partitions = lake.table(EVENTS).inspect.partitions().to_pylist()
    assert len(partitions) == 3


def test_crash_mid_write_leaves_previous_contents(lake, tmp_lake_settings):
    run = new_run(tmp_lake_settings, "test")
    lake.replace(EVENTS, [_events(0, 10)], run)

    def crashing_batches():
        yield _events(100, 10)
        raise RuntimeError("process killed mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        lake.append(EVENTS, crashing_batches(), run)
    ids = sorted(lake.scan(EVENTS, columns=("event_id",)).column("event_id").to_pylist())
    assert ids == sorted(f"e{i}" for i in range(10))


def test_schema_mismatch_is_refused(lake, tmp_lake_settings):
    with pytest.raises(ValueError, match="contract"):
        lake.append(USERS, [_events(0, 1)], new_run(tmp_lake_settings, "test"))


def test_replace_with_nothing_empties_the_table(lake, tmp_lake_settings):
    run = new_run(tmp_lake_settings, "test")
    lake.replace(EVENTS, [_events(0, 5)], run)
    lake.replace(EVENTS, [], run)
    assert lake.scan(EVENTS).num_rows == 0


def test_only_a_catalog_server_out_of_reach_is_an_outage_to_wait_out():
    refused = Exception("connection to server at 127.0.0.1, port 15432 failed: Connection refused")
    assert catalog_unreachable(OperationalError("SELECT 1", {}, refused))
    assert catalog_unreachable(ProgrammingError("SELECT 1", {}, Exception("cut"), connection_invalidated=True))
    assert not catalog_unreachable(OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: x")))
    assert not catalog_unreachable(ProgrammingError("SELECT 1", {}, Exception("relation does not exist")))
    assert not catalog_unreachable(CommitFailedException("the table changed underneath"))
