"""Folding a user's events and queries into their real-time context."""

import itertools
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from hybridrec.config import Settings, StreamingSettings
from hybridrec.contract import EventRecord, SearchQueryRecord
from hybridrec.streaming.context import ContextFolder, ContextRules, offset_key
from hybridrec.streaming.inbox import Message
from hybridrec.models.extraction.rules import RuleQueryReader

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
EVENTS, QUERIES = "events", "queries"
RULES = ContextRules.from_settings(Settings(streaming=StreamingSettings(
    engaged_items=3, skipped_items=3, search_tags=2, interest_half_life_s=60, search_tags_half_life_s=60)))
FOLDER = ContextFolder(RULES, RuleQueryReader(), EVENTS, QUERIES)
_offsets = itertools.count()


def event(event_type: str, item_id: str | None = "c1", at_s: float = 0, surface: str = "clip",
          offset: int | None = None, partition: int = 0, **fields) -> Message:
    record = EventRecord(event_id=f"e{random.random()}", user_id="u1", item_id=item_id, surface=surface,
                         event_type=event_type, ts=T0 + timedelta(seconds=at_s), **fields)
    return Message(EVENTS, partition, next(_offsets) if offset is None else offset, 0, record)


def query(text: str, at_s: float = 0, offset: int | None = None) -> Message:
    record = SearchQueryRecord(query_id="q", user_id="u1", text=text, ts=T0 + timedelta(seconds=at_s))
    return Message(QUERIES, 0, next(_offsets) if offset is None else offset, 0, record)


def fold(messages, doc=None, vectors=None):
    return FOLDER.fold(doc, "u1", messages, vectors or {})


def ids(entries):
    return [e["item_id"] for e in entries]


def test_engaged_items_are_recent_unique_and_bounded():
    doc = fold([event("click", "c1", 1), event("like", "c2", 2), event("view", "c9", 3), event("dwell", "c1", 4),
                event("share", "c3", 5), event("save", "c4", 6)])
    assert ids(doc["engaged"]) == ["c4", "c3", "c1"]  # views are impressions, not engagement
    assert doc["events_applied"] == 6 and doc["engaged"][2]["event_type"] == "dwell"


def test_the_newest_signal_moves_an_item_between_engaged_and_skipped():
    doc = fold([event("skip", "c1", 1), event("skip", "c2", 2), event("like", "c1", 3)])
    assert (ids(doc["engaged"]), ids(doc["skipped"])) == (["c1"], ["c2"])
    doc = fold([event("skip", "c1", 4)], doc)
    assert (ids(doc["engaged"]), ids(doc["skipped"])) == ([], ["c1", "c2"])


def test_a_late_event_does_not_override_a_newer_one():
    doc = fold([event("like", "c1", 10), event("skip", "c1", 5)])
    assert (ids(doc["engaged"]), ids(doc["skipped"])) == (["c1"], [])
    doc = fold([event("click", "c1", 2)], doc)
    assert doc["engaged"][0]["event_type"] == "like"


def test_sessions_follow_surface_and_pauses():
    doc = fold([event("view", "p1", 0, surface="place", position=4, request_id="r1", lat=37.5, lon=127.0),
                event("click", "p1", 5, surface="place")])
    assert doc["session"] == {"surface": "place", "started_ms": int(T0.timestamp() * 1000),
                              "last_ms": int(T0.timestamp() * 1000) + 5000, "events": 2, "position": 4,
                              "request_id": "r1", "location": {"lat": 37.5, "lon": 127.0}}
    doc = fold([event("view", "c1", 10)], doc)
    assert doc["session"]["surface"] == "clip" and doc["session"]["events"] == 1 and "location" not in doc["session"]
    doc = fold([event("view", "c2", 10 + RULES.session_gap_ms / 1000 + 1)], doc)
    assert doc["session"]["events"] == 1


def test_interest_is_a_decayed_weighted_mean_of_engaged_vectors():
    vectors = {("clip", "c1"): np.array([1.0, 0.0]), ("clip", "c2"): np.array([0.0, 1.0])}
    doc = fold([event("click", "c1", 0), event("click", "c2", 60)], vectors=vectors)  # one half-life apart
    assert doc["interest"]["vector"] == pytest.approx([1 / 3, 2 / 3], abs=1e-6)
    assert doc["interest"]["weight"] == pytest.approx(1.5)
    assert "interest" not in fold([event("click", "c1", 0)])  # no vectors published: no embedding


def test_search_tags_come_from_interest_queries_only_and_decay():
    doc = fold([query("손흥민 하이라이트", 0), query("페루 환율", 1), query("유튜브 로그인", 2), query("sushi", 60)])
    assert doc["queries_applied"] == 4
    assert {t["tag"]: t["weight"] for t in doc["search_tags"]} == pytest.approx(
        {"food/japanese/sushi": 1.0, "sports/soccer": 0.5}, abs=1e-6)
    doc = fold([query("ramen", 61), query("nba", 62)], doc)
    assert len(doc["search_tags"]) == 2  # bounded by the rules


def test_the_words_of_interest_searches_are_kept_even_when_the_taxonomy_names_nothing():
    doc = fold([query("frieren season 2", 0), query("페루 환율", 1), query("frieren season 2", 60),
                query("sushi", 60)])
    assert doc["search_tags"] == [{"tag": "food/japanese/sushi", "weight": 1.0}]
    assert {k["keyword"]: k["weight"] for k in doc["search_keywords"]} == pytest.approx(
        {"frieren season 2": 1.5, "sushi": 1.0}, abs=1e-6)  # decayed like the tags; a lookup adds nothing


def test_redelivered_messages_are_skipped():
    first = [event("like", "c1", 1, offset=10), query("sushi", 2, offset=3)]
    doc = fold(first)
    assert doc["offsets"] == {offset_key(EVENTS, 0): 10, offset_key(QUERIES, 0): 3}
    assert fold(first, doc) is None
    doc = fold([event("like", "c1", 1, offset=10), event("skip", "c2", 3, offset=11)], doc)
    assert doc["events_applied"] == 2 and ids(doc["skipped"]) == ["c2"]


def test_topic_interleaving_does_not_change_the_result():
    events = [event("like", f"c{i}", i, offset=i) for i in range(5)]
    queries = [query(t, i, offset=i) for i, t in enumerate(["sushi", "ramen", "nba"])]
    apart = fold(queries, fold(events))
    together = fold([m for pair in itertools.zip_longest(queries, events) for m in pair if m is not None])
    assert apart == together


