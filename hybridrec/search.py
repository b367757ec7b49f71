"""The search store: OpenSearch behind one small interface (k-NN, BM25, geo, versioned indices).

Readers always go through an alias; writers build a new versioned index and swap the alias in one
atomic ``_aliases`` call, so the feed is never served from a half-built index and the previous
version stays for rollback.

Every OpenSearch client of hybridrec is built here (:func:`opensearch_client`) under one
timeout/retry policy (:class:`ClientPolicy`, settings ``opensearch.timeout_s``, ``retries``,
``retry_backoff_s``): batch jobs and streaming wait and retry, a feed request (serving) has a
deadline and is never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch, Transport, helpers
from opensearchpy.exceptions import ConnectionError, ConnectionTimeout, NotFoundError, TransportError

from hybridrec.config import Settings

log = logging.getLogger(__name__)


RETRY_ON_STATUS = (502, 503, 504)  # the node or a proxy in front of it is briefly unavailable


@dataclass(frozen=True)
class ClientPolicy:
    """How long one request may take and how a failed one is retried.

    A connection error, a timeout or a 502/503/504 is retried up to ``retries`` times, after
    ``backoff_s``, then twice that, and so on (the stock transport retries at once, which only hits
    a restarting node again). Any other error is the request's own fault and is raised at once."""

    timeout_s: float
    retries: int
    backoff_s: float

    @classmethod
    def from_settings(cls, settings: Settings, deadline_s: float | None = None) -> "ClientPolicy":
        """The policy of jobs and streams, or with ``deadline_s`` that of a caller answering a request
        within that long (a feed): one attempt, as a retry after a timeout cannot meet the deadline and
        the caller has a degraded answer ready."""
        if deadline_s is not None:
            return cls(timeout_s=deadline_s, retries=0, backoff_s=0.0)
        cfg = settings.opensearch
        return cls(timeout_s=cfg.timeout_s, retries=cfg.retries, backoff_s=cfg.retry_backoff_s)

    def delay_s(self, attempt: int) -> float:
        """Wait before retry number ``attempt`` (0-based)."""
        return self.backoff_s * 2 ** attempt

    def retryable(self, err: TransportError) -> bool:
        return isinstance(err, ConnectionError) or err.status_code in RETRY_ON_STATUS


class PolicyTransport(Transport):
    """opensearch-py's transport with :class:`ClientPolicy`'s retries and back-off."""

    def __init__(self, hosts: Any, *, policy: ClientPolicy, **kwargs: Any):
        super().__init__(hosts, max_retries=0, **kwargs)
        self.policy = policy

    def perform_request(self, *args: Any, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            try:
                return super().perform_request(*args, **kwargs)
            except TransportError as err:
                if attempt >= self.policy.retries or not self.policy.retryable(err):
                    raise
                delay = self.policy.delay_s(attempt)
                log.warning("OpenSearch request failed (%s); retry %d of %d in %.2f s", _short(err), attempt + 1,
                            self.policy.retries, delay)
                time.sleep(delay)
                attempt += 1


def _short(err: TransportError) -> str:
    return type(err).__name__ if isinstance(err, ConnectionTimeout) else str(err)[:200]


def opensearch_client(settings: Settings, deadline_s: float | None = None, **options: Any) -> OpenSearch:
    """A client under the one policy (see :meth:`ClientPolicy.from_settings`); ``options`` are
    connection options (serializer, pool size), never timeouts or retries."""
    policy = ClientPolicy.from_settings(settings, deadline_s)
    return OpenSearch(hosts=settings.opensearch.urls, timeout=policy.timeout_s, transport_class=PolicyTransport,
                      policy=policy, **options)


def alias_name(settings: Settings, name: str) -> str:
    """The alias (or index) ``name`` of this deployment: ``<opensearch.index_prefix>-<name>``."""
    return f"{settings.opensearch.index_prefix}-{name}"


def versioned_index(alias: str, version: str) -> str:
    """The concrete index of one published version behind ``alias`` (publish creates it, serving pins it)."""
    return f"{alias}--{version}"


def knn_vector_field(dimension: int, space_type: str = "cosinesimil") -> dict[str, Any]:
    """An HNSW vector field on the Lucene engine (the k-NN plugin from Maven has no native engines), which
    retrieves by ``space_type``: ``cosinesimil`` or ``innerproduct`` (Lucene engine, OpenSearch 2.13+)."""
    return {
        "type": "knn_vector",
        "dimension": dimension,
        "method": {"name": "hnsw", "engine": "lucene", "space_type": space_type,
                   "parameters": {"m": 16, "ef_construction": 128}},
    }


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    source: dict[str, Any]


class SearchStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.client = opensearch_client(settings)

    def alias_name(self, name: str) -> str:
        return alias_name(self.settings, name)

    def create_index(self, alias: str, version: str, properties: dict[str, Any], metadata: dict[str, str]) -> str:
        """Create ``<alias>--<version>`` (replacing a failed earlier attempt of the same version)."""
        index = versioned_index(alias, version)
        if self.client.indices.exists(index=index):
            if index in self.alias_targets(alias):
                raise ValueError(f"refusing to rebuild {index}: the alias {alias} serves it")
            self.client.indices.delete(index=index)
        settings = {"index": {"knn": True, "number_of_shards": self.settings.opensearch.shards,
                              "number_of_replicas": self.settings.opensearch.replicas, "refresh_interval": "-1"}}
        self.client.indices.create(index=index, body={
            "settings": settings, "mappings": {"_meta": metadata, "properties": properties}})
        return index

    def bulk_index(self, index: str, docs: Iterable[dict[str, Any]], id_field: str, chunk_size: int = 2000) -> int:
        def actions() -> Iterator[dict[str, Any]]:
            for doc in docs:
                yield {"_index": index, "_id": doc[id_field], "_source": doc}

        indexed, errors = helpers.bulk(self.client, actions(), chunk_size=chunk_size, raise_on_error=False,
                                       request_timeout=120)
        if errors:
            raise RuntimeError(f"{len(errors)} documents failed to index into {index}; first: {errors[0]}")
        return indexed

    def finish_index(self, index: str) -> None:
        """Make a freshly built index searchable (refresh on, refreshed now)."""
        self.client.indices.put_settings(index=index, body={"index": {"refresh_interval": "1s"}})
        self.client.indices.refresh(index=index)

    def alias_targets(self, alias: str) -> list[str]:
        try:
            return sorted(self.client.indices.get_alias(name=alias))
        except NotFoundError:
            return []

    def versions(self, alias: str) -> list[str]:
        """Every built version of ``alias``, oldest first (version names sort by time)."""
        return sorted(self.client.indices.get(index=f"{alias}--*", expand_wildcards="open"))

    def swap_alias(self, alias: str, index: str) -> None:
        self.swap_aliases({alias: index})

    def swap_aliases(self, targets: dict[str, str]) -> None:
        """Point each alias at its index and away from every other, all in one atomic call."""
        actions: list[dict[str, Any]] = []
        for alias, index in targets.items():
            actions += [{"remove": {"index": old, "alias": alias}} for old in self.alias_targets(alias) if old != index]
            actions.append({"add": {"index": index, "alias": alias}})
        self.client.indices.update_aliases(body={"actions": actions})
        for alias, index in targets.items():
            log.info("alias %s -> %s", alias, index)

    def previous_version(self, alias: str) -> str:
        """The version built before the one ``alias`` serves."""
        current = self.alias_targets(alias)
        if not current:
            raise ValueError(f"alias {alias} serves nothing; nothing to roll back")
        older = [v for v in self.versions(alias) if v < current[0]]
        if not older:
            raise ValueError(f"alias {alias} serves its oldest version {current[0]}; nothing to roll back to")
        return older[-1]

    def rollback(self, alias: str) -> str:
        """Point ``alias`` at the version before the one it serves; returns that index."""
        previous = self.previous_version(alias)
        self.swap_alias(alias, previous)
        return previous

    def prune(self, alias: str, keep: int = 2) -> list[str]:
        """Delete all but the newest ``keep`` versions, never the one the alias serves."""
        serving = set(self.alias_targets(alias))
        doomed = [v for v in self.versions(alias)[:-keep] if v not in serving] if keep else []
        for index in doomed:
            self.client.indices.delete(index=index)
        return doomed

    def knn(self, alias: str, field: str, vector: list[float], k: int,
            filter_: dict[str, Any] | None = None, source: list[str] | None = None) -> list[Hit]:
        query: dict[str, Any] = {"vector": vector, "k": k}
        if filter_:
            query["filter"] = filter_
        body = {"size": k, "query": {"knn": {field: query}}}
        return self._search(alias, body, source)

    def match(self, alias: str, fields: list[str], text: str, k: int,
              filter_: dict[str, Any] | None = None, source: list[str] | None = None) -> list[Hit]:
        """BM25 over ``fields``."""
        query: dict[str, Any] = {"bool": {"must": [{"multi_match": {"query": text, "fields": fields}}]}}
        if filter_:
            query["bool"]["filter"] = [filter_]
        return self._search(alias, {"size": k, "query": query}, source)

    def _search(self, alias: str, body: dict[str, Any], source: list[str] | None) -> list[Hit]:
        if source is not None:
            body["_source"] = source
        response = self.client.search(index=alias, body=body)
        return [Hit(h["_id"], float(h["_score"]), h.get("_source", {})) for h in response["hits"]["hits"]]

    def get_many(self, alias: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        response = self.client.mget(index=alias, body={"ids": ids})
        return {d["_id"]: d["_source"] for d in response["docs"] if d.get("found")}


def geo_distance_filter(lat: float, lon: float, radius_km: float, field: str = "location") -> dict[str, Any]:
    return {"geo_distance": {"distance": f"{radius_km}km", field: {"lat": lat, "lon": lon}}}
