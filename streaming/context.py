"""A user's real-time context: what the feed needs to know about the last minutes and hours.

One JSON document per user, folded from their events and search queries:

* ``engaged``: recently engaged items, newest first (click, dwell, like, save, share, visit), unique;
* ``skipped``: recently skipped items, newest first (negative feedback), unique; an item moves
  between the two lists when a newer signal contradicts the older one;
* ``interest``: short-term interest embedding, the exponentially decayed weighted mean of the engaged
  items' vectors (absent until retraining publishes item vectors);
* ``search_tags``: interest tags from recent searches, decayed; utility and navigational queries
  contribute nothing;
* ``search_keywords``: the words of recent interest searches, decayed like the tags, whether or not
  the taxonomy names them ("frieren season 2"): serving looks items up by them (BM25);
* ``session``: the current session (surface, last position and feed request, location on the map).

Folding is deterministic and idempotent. Time is event time, never the clock, so replaying the same
messages gives the same document. Each document remembers the last offset it applied per
topic-partition (a user's messages all come from one partition per topic) and skips anything at or
below it, so a message redelivered after a crash is not counted twice. Events and queries fold into
disjoint parts of the document, so how the two topics interleave does not matter either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from hybridrec.config import Settings
from hybridrec.contract import EventRecord, QueryIntent, SearchQueryRecord
from hybridrec.streaming.inbox import Message
from hybridrec.models.extraction import QueryTagger
from hybridrec.streaming.vectors import Item

Doc = dict[str, Any]


@dataclass(frozen=True)
class ContextRules:
    engaged_items: int
    skipped_items: int
    search_tags: int
    search_keywords: int
    session_gap_ms: int
    interest_half_life_ms: float
    search_tags_half_life_ms: float
    event_weights: Mapping[str, float]

    @classmethod
    def from_settings(cls, settings: Settings) -> "ContextRules":
        s = settings.streaming
        return cls(s.engaged_items, s.skipped_items, s.search_tags, s.search_keywords, s.session_gap_s * 1000,
                   s.interest_half_life_s * 1000, s.search_tags_half_life_s * 1000,
                   dict(settings.signals.event_weights))

    def weight(self, event_type: str) -> float:
        return self.event_weights.get(event_type, 0.0)


def epoch_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _decay(dt_ms: float, half_life_ms: float) -> float:
    return math.pow(0.5, dt_ms / half_life_ms)


def offset_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def new_context(user_id: str) -> Doc:
    return {"user_id": user_id, "events_applied": 0, "queries_applied": 0, "engaged": [], "skipped": [],
            "search_tags": [], "search_keywords": [], "offsets": {}}


class ContextFolder:
    """Applies a user's messages to their document."""

    def __init__(self, rules: ContextRules, tagger: QueryTagger, events_topic: str, queries_topic: str):
        self.rules, self.tagger = rules, tagger
        self.events_topic, self.queries_topic = events_topic, queries_topic

    def positive_items(self, messages: Iterable[Message]) -> list[Item]:
        """(surface, item_id) of the items whose vectors the fold of ``messages`` will need."""
        return [(m.record.surface, m.record.item_id) for m in messages
                if m.topic == self.events_topic and m.record.item_id and self.rules.weight(m.record.event_type) > 0]

    def fold(self, doc: Doc | None, user_id: str, messages: Iterable[Message],
             vectors: Mapping[Item, np.ndarray]) -> Doc | None:
        """The document after ``messages`` (in partition order), or None if every one was applied before."""
        doc = new_context(user_id) if doc is None else doc
        offsets = doc["offsets"]
        changed = False
        for message in messages:
            key = offset_key(message.topic, message.partition)
            if message.offset <= offsets.get(key, -1):
                continue
            if message.topic == self.events_topic:
                self._event(doc, message.record, vectors)
            elif message.topic == self.queries_topic:
                self._query(doc, message.record)
            else:
                raise ValueError(f"no context rule for topic {message.topic!r}")
            offsets[key] = message.offset
            changed = True
        return doc if changed else None

    def _event(self, doc: Doc, event: EventRecord, vectors: Mapping[Item, np.ndarray]) -> None:
        rules = self.rules
        ts = epoch_ms(event.ts)
        doc["events_applied"] += 1
        doc["last_event_ms"] = max(doc.get("last_event_ms", ts), ts)
        self._session(doc, event, ts)
        weight = rules.weight(event.event_type)
        if not event.item_id or weight == 0:
            return
        entry = {"item_id": event.item_id, "surface": event.surface, "event_type": event.event_type, "ts_ms": ts}
        keep, drop, limit = (("engaged", "skipped", rules.engaged_items) if weight > 0
                             else ("skipped", "engaged", rules.skipped_items))
        if _newest_ts(doc[drop], event.item_id) > ts:
            return  # a newer contrary signal already stands
        doc[drop] = [e for e in doc[drop] if e["item_id"] != event.item_id]
        doc[keep] = _remember(doc[keep], entry, limit)
        vector = vectors.get((event.surface, event.item_id)) if weight > 0 else None
        if vector is not None:
            self._interest(doc, vector, weight, ts)

    def _session(self, doc: Doc, event: EventRecord, ts: int) -> None:
        session = doc.get("session")
        if (session is None or session["surface"] != event.surface
                or ts - session["last_ms"] > self.rules.session_gap_ms):
            session = {"surface": event.surface, "started_ms": ts, "last_ms": ts, "events": 0}
            doc["session"] = session
        session["last_ms"] = max(session["last_ms"], ts)
        session["events"] += 1
        if event.position is not None:
            session["position"] = event.position
        if event.request_id is not None:
            session["request_id"] = event.request_id
        if event.lat is not None and event.lon is not None:
            session["location"] = {"lat": event.lat, "lon": event.lon}

    def _interest(self, doc: Doc, vector: np.ndarray, weight: float, ts: int) -> None:
        """Decayed weighted mean: older evidence fades with the half-life; a late event counts as old."""
        interest = doc.get("interest")
        if interest is None or len(interest["vector"]) != len(vector):
            doc["interest"] = {"vector": _floats(vector), "weight": weight, "at_ms": ts}
            return
        half_life = self.rules.interest_half_life_ms
        old_weight, new_weight = interest["weight"], weight
        if ts >= interest["at_ms"]:
            old_weight *= _decay(ts - interest["at_ms"], half_life)
            interest["at_ms"] = ts
        else:
            new_weight *= _decay(interest["at_ms"] - ts, half_life)
        total = old_weight + new_weight
        mean = (np.asarray(interest["vector"], dtype=np.float64) * old_weight + vector * new_weight) / total
        interest.update(vector=_floats(mean), weight=total)

    def _query(self, doc: Doc, query: SearchQueryRecord) -> None:
        doc["queries_applied"] += 1
        tagged = self.tagger.read(query.text)
        if tagged.intent != QueryIntent.INTEREST or not (tagged.tags or tagged.keywords):
            return
        ts = epoch_ms(query.ts)
        at = doc.get("search_tags_at_ms", ts)  # both lists below are decayed to this moment
        doc["search_tags"] = self._decayed(doc["search_tags"], "tag", tagged.tags, ts, at, self.rules.search_tags)
        doc["search_keywords"] = self._decayed(doc.get("search_keywords", []), "keyword", tagged.keywords, ts, at,
                                               self.rules.search_keywords)
        doc["search_tags_at_ms"] = max(at, ts)

    def _decayed(self, entries: list[dict], name: str, new: Iterable[str], ts: int, at: int, limit: int) -> list[dict]:
        """``entries`` decayed from ``at`` to the newer of the two moments, each of ``new`` added with weight
        1 at ``ts`` (a late query counts as old), the ``limit`` heaviest kept."""
        half_life = self.rules.search_tags_half_life_ms
        kept = {e[name]: e["weight"] * (_decay(ts - at, half_life) if ts > at else 1.0) for e in entries}
        gain = _decay(at - ts, half_life) if ts < at else 1.0
        for value in new:
            kept[value] = kept.get(value, 0.0) + gain
        ranked = sorted(kept.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [{name: value, "weight": round(weight, 6)} for value, weight in ranked]


def _newest_ts(entries: list[dict], item_id: str) -> int:
    return max((e["ts_ms"] for e in entries if e["item_id"] == item_id), default=-1)


def _remember(entries: list[dict], entry: dict, limit: int) -> list[dict]:
    """Newest first by event time, one entry per item (its newest signal), at most ``limit``."""
    if _newest_ts(entries, entry["item_id"]) > entry["ts_ms"]:
        return entries
    others = [e for e in entries if e["item_id"] != entry["item_id"]]
    return sorted([entry, *others], key=lambda e: -e["ts_ms"])[:limit]


def _floats(vector: np.ndarray) -> list[float]:
    return np.round(vector.astype(np.float64), 6).tolist()
