"""Item vectors for the short-term interest embedding, behind one small interface.

Nightly retraining publishes the items of each surface behind an alias (``items-place``,
``items-clip``), with a content vector per item when the content model produced one; serving reads
the user context's interest embedding as a vector of that same space. Until vectors are published
there are none: the embedding is simply absent from user contexts, and the aliases are looked at
again every few minutes.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import numpy as np

from hybridrec.config import Settings
from hybridrec.contract import SURFACES
from hybridrec.search import SearchStore, knn_vector_field

log = logging.getLogger(__name__)

Item = tuple[str, str]  # (surface, item_id)


class ItemVectors(Protocol):
    def vectors(self, items: Iterable[Item]) -> dict[Item, np.ndarray]:
        """Vectors of the items that have one; the others are left out."""
        ...


class NoItemVectors:
    def vectors(self, items: Iterable[Item]) -> dict[Item, np.ndarray]:
        return {}


class StaticItemVectors:
    """A fixed table of vectors (tests, notebooks)."""

    def __init__(self, table: Mapping[Item, np.ndarray]):
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}

    def vectors(self, items: Iterable[Item]) -> dict[Item, np.ndarray]:
        return {i: self.table[i] for i in items if i in self.table}


class OpenSearchItemVectors:
    """Vectors read from the published items with one ``mget`` per batch, cached: they change only when
    retraining swaps an alias, and then the cache is dropped."""

    def __init__(self, store: SearchStore, aliases: Mapping[str, str], field: str, cache_size: int = 200_000,
                 recheck_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.store, self.aliases, self.field = store, dict(aliases), field
        self.cache_size, self.recheck_s, self.clock = cache_size, recheck_s, clock
        self._cache: OrderedDict[Item, np.ndarray | None] = OrderedDict()
        self._serving: dict[str, tuple[str, ...]] = {}
        self._checked_at = -float("inf")

    @classmethod
    def from_settings(cls, settings: Settings) -> "OpenSearchItemVectors":
        store, s = SearchStore(settings), settings.streaming
        aliases = {surface: store.alias_name(s.item_vectors_alias.format(surface=surface)) for surface in SURFACES}
        return cls(store, aliases, s.item_vector_field)

    def _check_aliases(self) -> None:
        if self.clock() - self._checked_at < self.recheck_s:
            return
        self._checked_at = self.clock()
        serving = {surface: tuple(self.store.alias_targets(alias)) if self.store.client.indices.exists_alias(name=alias)
                   else () for surface, alias in self.aliases.items()}
        if serving != self._serving:
            log.info("item vectors (%s): %s", self.field, "; ".join(
                f"{self.aliases[s]} -> {', '.join(targets) or 'nothing yet (no interest embedding)'}"
                for s, targets in serving.items()))
            self._serving = serving
            self._cache.clear()

    def vectors(self, items: Iterable[Item]) -> dict[Item, np.ndarray]:
        self._check_aliases()
        wanted = [i for i in dict.fromkeys(items) if self._serving.get(i[0])]
        missing = [i for i in wanted if i not in self._cache]
        if missing:
            docs = [{"_index": self.aliases[surface], "_id": item_id, "_source": [self.field]}
                    for surface, item_id in missing]
            found = self.store.client.mget(body={"docs": docs})["docs"]
            for item, doc in zip(missing, found, strict=True):
                vector = doc.get("_source", {}).get(self.field) if doc.get("found") else None
                self._cache[item] = np.asarray(vector, dtype=np.float32) if vector is not None else None
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return {i: v for i in wanted if (v := self._cache.get(i)) is not None}


def publish_item_vectors(store: SearchStore, alias: str, field: str, vectors: Mapping[str, np.ndarray],
                         version: str) -> str:
    """Build ``<alias>--<version>`` with one ``{item_id, <field>}`` document per item and swap ``alias`` to it:
    the part of the published items' layout :class:`OpenSearchItemVectors` reads (tests, benchmarks)."""
    dimension = len(next(iter(vectors.values())))
    index = store.create_index(alias, version, {"item_id": {"type": "keyword"}, field: knn_vector_field(dimension)},
                               {"hybridrec.vector-dimension": str(dimension)})
    store.bulk_index(index, ({"item_id": item, field: np.asarray(v, dtype=np.float32).tolist()}
                             for item, v in vectors.items()), "item_id")
    store.finish_index(index)
    store.swap_alias(alias, index)
    return index
