"""OpenSearch as serving reads it: few round trips, short timeouts, fast JSON.

Serving has its own client rather than :class:`hybridrec.search.SearchStore`'s because a feed
request has a deadline (``serving.search_timeout_s``, never retried, so degraded mode answers in time:
:class:`hybridrec.search.ClientPolicy`) and spends a visible share of its time parsing item vectors,
which orjson does several times faster. Index names come from the store's alias naming.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from opensearchpy.exceptions import NotFoundError
from opensearchpy.serializer import JSONSerializer

from hybridrec.config import Settings
from hybridrec.features.documents import items_alias, users_alias
from hybridrec.runinfo import MODEL_CONFIG_HASH
from hybridrec.search import alias_name, opensearch_client, versioned_index

RUN_ID_META = "hybridrec.run-id"
REQUEST_THREADS = 40  # FastAPI's thread pool: a connection per thread, so none is closed and reopened under load


class _OrjsonSerializer(JSONSerializer):
    def loads(self, s: Any) -> Any:
        return orjson.loads(s)

    def dumps(self, data: Any) -> Any:
        return data if isinstance(data, (str, bytes)) else orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()


class ServingStore:
    """The published item/user aliases and the real-time user-context index, read-only."""

    def __init__(self, settings: Settings):
        self.timeout_s = settings.serving.search_timeout_s
        self.client = opensearch_client(settings, deadline_s=self.timeout_s, serializer=_OrjsonSerializer(),
                                        pool_maxsize=REQUEST_THREADS)
        self.context_index = alias_name(settings, settings.streaming.context_index)
        self._items = {s: alias_name(settings, items_alias(s)) for s in ("place", "clip")}
        self._users = {s: alias_name(settings, users_alias(s)) for s in ("place", "clip")}

    def items_index(self, surface: str) -> str:
        return self._items[surface]

    def run_users_index(self, surface: str, run_id: str) -> str:
        """The user index a run published (beside its item index, swapped with it in one alias call)."""
        return versioned_index(self._users[surface], run_id.lower())

    def load_user(self, users_index: str, user_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The user's document in ``users_index`` (the served run's) and real-time context, in one real-time
        ``_mget``. A context index that does not exist yet (streaming not running) reads as no context."""
        body = {"docs": [{"_index": users_index, "_id": user_id},
                         {"_index": self.context_index, "_id": user_id}]}
        docs = self.client.mget(body=body, realtime=True)["docs"]
        user = docs[0]["_source"] if docs[0].get("found") else None
        if "error" in docs[0]:
            raise LookupError(f"user index {users_index} unavailable: {docs[0]['error']}")
        context = docs[1]["_source"] if docs[1].get("found") else None
        return user, context

    def msearch_responses(self, index: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The response of each body, in order; one round trip. A failed sub-search raises (caller degrades)."""
        if not bodies:
            return []
        lines: list[dict[str, Any]] = []
        for body in bodies:
            lines += [{"index": index}, body]
        responses = self.client.msearch(body=lines)["responses"]
        failed = [r["error"] for r in responses if "error" in r]
        if failed:
            raise LookupError(f"search on {index} failed: {failed[0]}")
        return responses

    def msearch(self, index: str, bodies: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Hits of each body, in order (see :meth:`msearch_responses`)."""
        return [r["hits"]["hits"] for r in self.msearch_responses(index, bodies)]

    def get_items(self, index: str, ids: list[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        """Documents of ``index`` (an alias or a concrete index) by id; ids it lacks are left out."""
        if not ids:
            return {}
        response = self.client.mget(index=index, body={"ids": ids}, _source_includes=fields)
        return {d["_id"]: d["_source"] for d in response["docs"] if d.get("found")}

    def scan_items(self, index: str, fields: list[str], limit: int,
                   batch: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Up to ``limit`` documents of ``index`` in batches (a scroll, with a timeout meant for bulk reads)."""
        response = self.client.search(index=index, body={"size": batch, "_source": fields, "sort": ["_doc"]},
                                      scroll="1m", request_timeout=30)
        scroll_id, read = response.get("_scroll_id"), 0
        try:
            while response["hits"]["hits"] and read < limit:
                hits = response["hits"]["hits"][: limit - read]
                read += len(hits)
                yield hits
                response = self.client.scroll(scroll_id=scroll_id, scroll="1m", request_timeout=30)
                scroll_id = response.get("_scroll_id", scroll_id)
        finally:
            if scroll_id:
                self.client.clear_scroll(scroll_id=scroll_id, ignore=(404,))

    def served_run(self, surface: str) -> tuple[str, str, int | None, str | None]:
        """(index the items alias points at, run id in its ``_meta``, content vector dimension or None,
        the run's model-config hash or None for a run published before runs carried one); one small
        request, cheap enough to poll."""
        alias = self._items[surface]
        try:
            mapping = self.client.indices.get_mapping(index=alias)
        except NotFoundError as err:
            raise LookupError(f"alias {alias} does not exist: run `hybridrec retrain` first") from err
        index, body = next(iter(mapping.items()))
        run_id = body["mappings"].get("_meta", {}).get(RUN_ID_META)
        if not run_id:
            raise LookupError(f"index {index} has no {RUN_ID_META} in its _meta")
        content = body["mappings"].get("properties", {}).get("content_vector")
        return index, run_id, (content or {}).get("dimension"), body["mappings"]["_meta"].get(MODEL_CONFIG_HASH)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # noqa: BLE001 - any failure means "not reachable" to a readiness probe
            return False
