"""User contexts in OpenSearch: one document per user, read by serving with a single real-time GET.

OpenSearch already serves the feed's indices, so the context costs serving no extra system, and a
GET by id is real-time (it does not wait for a refresh): a context is visible the moment its write
is acknowledged. Writes are whole documents with optimistic concurrency (``if_seq_no`` /
``if_primary_term``; ``create`` for a new user), so two updaters that briefly both think they own a
user during a rebalance cannot overwrite each other: the loser re-reads and re-folds. Only the
fields worth querying are indexed; the rest is stored, which keeps indexing cheap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from hybridrec.config import Settings
from hybridrec.search import SearchStore
from hybridrec.streaming.context import Doc

log = logging.getLogger(__name__)

MAPPING = {
    "dynamic": False,
    "properties": {
        "user_id": {"type": "keyword"},
        "updated_at_ms": {"type": "date", "format": "epoch_millis"},
        "last_event_ms": {"type": "date", "format": "epoch_millis"},
        "events_applied": {"type": "long"},
        "queries_applied": {"type": "long"},
        "session": {"properties": {"surface": {"type": "keyword"}}},
        "search_tags": {"properties": {"tag": {"type": "keyword"}}},
    },
}

BULK_RESPONSE_FIELDS = "items.*._id,items.*.status,items.*._seq_no,items.*._primary_term,items.*.error"


@dataclass(frozen=True)
class Version:
    """Where a document stood when read: a write succeeds only if it still stands there."""

    seq_no: int
    primary_term: int


@dataclass(frozen=True)
class Stored:
    doc: Doc
    version: Version


class ContextStore:
    def __init__(self, search: SearchStore, index: str):
        self.search = search
        self.client = search.client
        self.index = index

    @classmethod
    def from_settings(cls, settings: Settings) -> "ContextStore":
        search = SearchStore(settings)
        return cls(search, search.alias_name(settings.streaming.context_index))

    def ensure_index(self) -> None:
        if self.client.indices.exists(index=self.index):
            return
        cluster = self.search.settings.opensearch
        body = {"settings": {"index": {"number_of_shards": cluster.shards, "number_of_replicas": cluster.replicas,
                                       "refresh_interval": "5s"}},  # GETs are real-time; search needs no speed
                "mappings": MAPPING}
        self.client.indices.create(index=self.index, body=body, ignore=400)  # 400: created concurrently
        log.info("user-context index %s ready", self.index)

    def get(self, user_id: str) -> Doc | None:
        """The context serving reads (real-time, one round trip)."""
        response = self.client.get(index=self.index, id=user_id, ignore=404)
        return response["_source"] if response.get("found") else None

    def load(self, user_ids: Iterable[str]) -> dict[str, Stored]:
        ids = list(user_ids)
        if not ids:
            return {}
        response = self.client.mget(index=self.index, body={"ids": ids}, realtime=True)
        return {d["_id"]: Stored(d["_source"], Version(d["_seq_no"], d["_primary_term"]))
                for d in response["docs"] if d.get("found")}

    def save(self, docs: dict[str, tuple[Doc, Version | None]]) -> tuple[dict[str, Stored], list[str]]:
        """Write each document if it is still at the version it was read at (None: must not exist yet).
        Returns the written documents with their new versions, and the users that lost a race."""
        if not docs:
            return {}, []
        now_ms = int(time.time() * 1000)
        lines = []
        for user_id, (doc, version) in docs.items():
            doc["updated_at_ms"] = now_ms
            if version is None:
                action: dict[str, Any] = {"create": {"_index": self.index, "_id": user_id}}
            else:
                action = {"index": {"_index": self.index, "_id": user_id, "if_seq_no": version.seq_no,
                                    "if_primary_term": version.primary_term}}
            lines += [orjson.dumps(action), orjson.dumps(doc)]
        response = self.client.bulk(body=b"\n".join(lines) + b"\n", filter_path=BULK_RESPONSE_FIELDS)
        written: dict[str, Stored] = {}
        conflicts: list[str] = []
        for item in response["items"]:
            result = next(iter(item.values()))
            user_id = result["_id"]
            if result["status"] == 409:
                conflicts.append(user_id)
            elif result["status"] >= 300:
                raise RuntimeError(f"user context {user_id} not written to {self.index}: {result.get('error')}")
            else:
                written[user_id] = Stored(docs[user_id][0], Version(result["_seq_no"], result["_primary_term"]))
        return written, conflicts
