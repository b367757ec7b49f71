"""Replay: recorded days read in time order, re-enacted now with unique ids, at a steady rate; and the
wire format the bus writes."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from hybridrec.bus import encode
from hybridrec.contract import EVENTS, SEARCH_QUERIES, EventRecord
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run
from hybridrec.streaming.replay import Pacer, in_time_order, lake_days, relabel

T0 = datetime(2026, 10, 1, 23, 0, tzinfo=timezone.utc)


def test_lake_days_are_whole_days_in_time_order(tmp_lake_settings):
    lake = Lake(tmp_lake_settings)
    hours = [5, 0, 3, 1, 4, 2]  # 23:00 .. 04:00 across midnight, written out of order
    lake.replace(EVENTS, [EVENTS.to_arrow({
        "event_id": [f"e{h}" for h in hours], "user_id": ["u1"] * 6, "item_id": ["c1"] * 6, "surface": ["clip"] * 6,
        "event_type": ["view"] * 6, "ts": [T0 + timedelta(hours=h) for h in hours]})], new_run(tmp_lake_settings, "t"))
    days = [t["event_id"].to_pylist() for t in lake_days(lake, EVENTS)]
    assert days == [["e0"], ["e1", "e2", "e3", "e4", "e5"]]
    assert list(lake_days(lake, SEARCH_QUERIES)) == []  # missing table: nothing to replay


def test_events_and_queries_merge_by_time():
    events = EVENTS.to_arrow({"event_id": ["e1", "e2"], "user_id": ["u1", "u1"], "surface": ["clip"] * 2,
                              "event_type": ["view"] * 2, "ts": [T0, T0 + timedelta(seconds=10)]})
    queries = SEARCH_QUERIES.to_arrow({"query_id": ["q1"], "user_id": ["u1"], "text": ["nba"],
                                       "ts": [T0 + timedelta(seconds=5)]})
    merged = [(kind, row.get("event_id") or row["query_id"]) for kind, row in in_time_order([events], [queries])]
    assert merged == [("events", "e1"), ("queries", "q1"), ("events", "e2")]


def test_relabel_re_enacts_now_with_unique_ids():
    now = datetime(2026, 11, 24, tzinfo=timezone.utc)
    row = {"event_id": "e1", "request_id": "q7", "query_id": "q7", "item_id": "c1", "user_id": "u1", "ts": T0}
    assert relabel("events", row, "r1", now) == {"event_id": "e1.r1", "request_id": "q7.r1", "query_id": "q7.r1",
                                                "item_id": "c1", "user_id": "u1", "ts": now}
    assert relabel("queries", {"query_id": "q7", "ts": T0}, "r1", now) == {"query_id": "q7.r1", "ts": now}


def test_pacer_holds_the_rate_and_catches_up():
    clock = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock[0] += seconds

    pacer = Pacer(rate=100, clock=lambda: clock[0], sleep=sleep)
    for _ in range(50):
        pacer.wait()
    assert clock[0] == pytest.approx(0.49)
    clock[0] += 1.0  # a stall: the next messages go out without sleeping until back on schedule
    sleeps.clear()
    for _ in range(100):
        pacer.wait()
    assert len(sleeps) < 10


def test_encode_is_the_contract_on_the_wire():
    raw = encode({"event_id": "e1", "user_id": "u1", "item_id": None, "surface": "clip", "event_type": "view",
                  "ts": datetime(2026, 11, 24, 9, 0, tzinfo=timezone(timedelta(hours=9)))})
    assert json.loads(raw) == {"event_id": "e1", "user_id": "u1", "surface": "clip", "event_type": "view",
                               "ts": "2026-11-24T00:00:00Z"}
    assert EventRecord.model_validate_json(raw).ts == datetime(2026, 11, 24, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="time zone"):
        encode({"ts": datetime(2026, 11, 24)})
