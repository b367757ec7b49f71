from datetime import datetime, timezone

import pyarrow as pa
import pytest
from pydantic import ValidationError

from hybridrec.contract import ALL_TABLES, EVENTS, EventRecord, SearchQueryRecord, table_by_name


@pytest.mark.parametrize("spec", ALL_TABLES, ids=lambda s: s.qualified_name)
def test_arrow_iceberg_and_pydantic_views_agree(spec):
    iceberg = spec.iceberg_schema
    assert [f.name for f in iceberg.fields] == spec.column_names == spec.arrow_schema.names
    assert [f.required for f in iceberg.fields] == [not f.nullable for f in spec.arrow_schema]
    assert list(spec.model.model_fields) == spec.column_names
    assert iceberg.as_arrow().names == spec.column_names


def test_events_are_partitioned_by_day_of_timestamp():
    (field,) = EVENTS.partition_spec.fields
    assert str(field.transform) == "day" and field.source_id == EVENTS.column_names.index("ts") + 1


def _event(**overrides):
    body = {"event_id": "e1", "user_id": "u1", "item_id": "c1", "surface": "clip", "event_type": "view",
            "ts": "2026-10-01T12:00:00Z"}
    body.update(overrides)
    return body


def test_event_model_accepts_valid_event():
    event = EventRecord.model_validate(_event(dwell_ms=1200))
    assert event.ts == datetime(2026, 10, 1, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("bad, message", [
    ({"surface": "shop"}, "surface"),
    ({"event_type": "purchase"}, "event_type"),
    ({"dwell_ms": "long"}, "dwell_ms"),
    ({"colour": "red"}, "colour"),
])
def test_event_model_rejects_bad_fields_with_their_name(bad, message):
    with pytest.raises(ValidationError, match=message):
        EventRecord.model_validate(_event(**bad))


def test_event_model_requires_user():
    body = _event()
    del body["user_id"]
    with pytest.raises(ValidationError, match="user_id"):
        EventRecord.model_validate(body)


def test_search_query_model_keeps_clicked_documents():
    query = SearchQueryRecord.model_validate({"query_id": "q1", "user_id": "u1", "text": "볼리비아 비자",
                                              "clicked_item_ids": ["p1"], "ts": "2026-10-01T00:00:00Z"})
    assert query.clicked_item_ids == ["p1"]


def test_to_arrow_fills_optional_columns_and_requires_required_ones():
    table = EVENTS.to_arrow({"event_id": ["e"], "user_id": ["u"], "surface": ["clip"], "event_type": ["skip"],
                             "ts": [datetime(2026, 10, 1, tzinfo=timezone.utc)]})
    assert table.schema == EVENTS.arrow_schema and table.column("item_id").to_pylist() == [None]
    with pytest.raises(ValueError, match="user_id"):
        EVENTS.to_arrow({"event_id": ["e"]})


def test_relocated_spec_keeps_schema():
    copy = EVENTS.relocated("gowalla", "events_train")
    assert copy.identifier == ("gowalla", "events_train") and copy.arrow_schema == EVENTS.arrow_schema


def test_table_lookup_names_known_tables():
    assert table_by_name("raw.events") is EVENTS
    with pytest.raises(KeyError, match="raw.events"):
        table_by_name("raw.evnts")


def test_timestamps_are_utc_microseconds():
    assert EVENTS.arrow_schema.field("ts").type == pa.timestamp("us", tz="UTC")
