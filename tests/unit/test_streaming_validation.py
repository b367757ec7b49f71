"""Message validation against the data contract: each way a message can be wrong has its own reason."""

import json
from datetime import datetime, timezone

import pytest

from hybridrec.contract import CLIPS, PLACES
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run
from hybridrec.streaming.validation import KnownItems, LakeItems, Reason, Rejection, Validator

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
ITEMS = KnownItems({"p1": "place", "c1": "clip"})


def _validator(skew_s: float = 300) -> Validator:
    return Validator(ITEMS, skew_s, clock=NOW.timestamp)


def _event(**changes) -> bytes:
    event = {"event_id": "e1", "user_id": "u1", "item_id": "p1", "surface": "place", "event_type": "click",
             "ts": "2026-11-24T11:59:00Z"}
    event.update(changes)
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def _query(**changes) -> bytes:
    query = {"query_id": "q1", "user_id": "u1", "text": "국밥 맛집", "surface": "place",
             "clicked_item_ids": ["p1"], "ts": "2026-11-24T11:59:00+09:00"}
    query.update(changes)
    return json.dumps(query).encode()


def test_valid_messages_become_contract_records():
    event = _validator().event(_event(dwell_ms=1200, position=3, lat=37.5, lon=127.0))
    assert not isinstance(event, Rejection)
    assert (event.item_id, event.dwell_ms) == ("p1", 1200)
    assert event.ts == datetime(2026, 11, 24, 11, 59, tzinfo=timezone.utc)
    query = _validator().query(_query())
    assert not isinstance(query, Rejection) and query.clicked_item_ids == ["p1"]


def test_a_search_event_needs_no_item():
    assert not isinstance(_validator().event(_event(event_type="search", item_id=None, query_id="q1")), Rejection)


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", Reason.BAD_JSON),
    (b"\xff\xfe\x00", Reason.BAD_JSON),
    (b"[1, 2, 3]", Reason.BAD_JSON),
    (_event(user_id=...), Reason.MISSING_FIELD),
    (_event(colour="blue"), Reason.UNKNOWN_FIELD),
    (_event(event_type="purchase"), Reason.UNKNOWN_VALUE),
    (_event(surface="tv"), Reason.UNKNOWN_VALUE),
    (_event(dwell_ms="long"), Reason.WRONG_TYPE),
    (_event(user_id=42), Reason.WRONG_TYPE),
    (_event(ts="2026-11-24T11:59:00"), Reason.WRONG_TYPE),  # no time zone
    (_event(ts="2026-11-24T12:06:00Z"), Reason.FUTURE_TIMESTAMP),
    (_event(item_id=None), Reason.MISSING_ITEM),
    (_event(item_id="p404"), Reason.UNKNOWN_ITEM),
    (_event(item_id="c1"), Reason.SURFACE_MISMATCH),
])
def test_malformed_events_are_rejected_with_their_reason(raw, reason):
    result = _validator().event(raw)
    assert isinstance(result, Rejection) and result.reason == reason and result.detail


def test_future_bound_is_the_configured_skew():
    assert not isinstance(_validator(skew_s=600).event(_event(ts="2026-11-24T12:06:00Z")), Rejection)


def test_queries_check_their_clicked_items():
    result = _validator().query(_query(clicked_item_ids=["p1", "p404"]))
    assert isinstance(result, Rejection) and result.reason == Reason.UNKNOWN_ITEM and "p404" in result.detail
    assert _validator().query(_query(text=None)).reason == Reason.WRONG_TYPE


def _catalogue(lake: Lake, settings, places: list[str], clips: list[str]) -> None:
    run = new_run(settings, "test")
    lake.replace(PLACES, [PLACES.to_arrow({
        "item_id": places, "name": places, "category_path": ["food"] * len(places), "lat": [37.5] * len(places),
        "lon": [127.0] * len(places), "region": ["gangnam"] * len(places), "created_at": [NOW] * len(places)})], run)
    lake.replace(CLIPS, [CLIPS.to_arrow({
        "item_id": clips, "creator_id": ["k"] * len(clips), "title": clips, "topic_path": ["sports"] * len(clips),
        "created_at": [NOW] * len(clips)})], run)


def test_lake_items_follow_the_catalogue(tmp_lake_settings):
    lake = Lake(tmp_lake_settings)
    _catalogue(lake, tmp_lake_settings, ["p1"], ["c1"])
    now = [0.0]
    items = LakeItems(lake, refresh_s=60, clock=lambda: now[0])
    assert (items.surface("p1"), items.surface("c1"), items.surface("c2")) == ("place", "clip", None)
    _catalogue(lake, tmp_lake_settings, ["p1"], ["c1", "c2"])
    items.refresh_if_due()
    assert items.surface("c2") is None  # not due yet
    now[0] = 61.0
    items.refresh_if_due()
    assert items.surface("c2") == "clip" and len(items) == 3


def test_lake_items_without_catalogue_know_nothing(tmp_lake_settings):
    assert len(LakeItems(Lake(tmp_lake_settings), refresh_s=60)) == 0
