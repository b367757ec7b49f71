"""The user-context updater: a consumer-group member that folds events and queries into user contexts.

Each poll is one small batch: group the messages by user, read the users' documents (from a local
cache, else one ``mget``), fold, write them back in one ``bulk``. Kafka offsets are committed only
after the write is acknowledged, so nothing is lost; what a crash replays is skipped per document
(see :mod:`hybridrec.streaming.context`), so nothing is counted twice. More members in the group
share the partitions; a rebalance drops the cache, and the write's version check settles the rare
race between an outgoing and an incoming owner. Malformed messages are counted and skipped here; the
lake sink is the one that dead-letters them, so each lands in the dead-letter topic once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from kafka import TopicPartition
from kafka.errors import CommitFailedError
from opensearchpy.exceptions import ConnectionError as SearchConnectionError
from opensearchpy.exceptions import TransportError

from hybridrec.bus import EventBus
from hybridrec.config import Settings
from hybridrec.lake import Lake
from hybridrec.streaming.context import ContextFolder, ContextRules
from hybridrec.streaming.context_store import ContextStore, Stored
from hybridrec.streaming.inbox import Batch, Inbox, Message
from hybridrec.streaming.lifecycle import stop_on_signals
from hybridrec.streaming.metrics import Metrics
from hybridrec.models.extraction import make_query_tagger
from hybridrec.streaming.validation import KnownItems, LakeItems, Validator
from hybridrec.streaming.vectors import ItemVectors, OpenSearchItemVectors

log = logging.getLogger(__name__)

STREAM_TAGGER_CACHE = 100_000  # query texts whose reading is remembered: popular queries repeat a lot
MAX_RACES = 5  # re-reads after losing a version race, per batch
MAX_BACKOFF_S = 30.0


class ContextUpdater:
    def __init__(self, inbox: Inbox, store: ContextStore, folder: ContextFolder, vectors: ItemVectors,
                 items: KnownItems, metrics: Metrics, cache_users: int, commit_interval_ms: int):
        self.inbox, self.store, self.folder, self.vectors, self.items = inbox, store, folder, vectors, items
        self.metrics = metrics
        self.cache_users = cache_users
        self.commit_interval_s = commit_interval_ms / 1000
        self._cache: OrderedDict[str, Stored] = OrderedDict()
        self._processed: dict[TopicPartition, int] = {}  # next offset per partition, written to the store
        self._committed_at = time.monotonic()

    def step(self, stop: threading.Event) -> Batch:
        """Poll one batch, fold it into the contexts, write them, maybe commit offsets."""
        self.items.refresh_if_due()
        batch = self.inbox.poll()
        if batch.rebalanced:
            self._cache.clear()
            self._processed.clear()
        if batch.accepted and not self._apply_until_written(batch.accepted, stop):
            return batch  # stopping mid-retry: leave these offsets uncommitted, they will be redelivered
        self._processed.update(batch.ends)
        if time.monotonic() - self._committed_at >= self.commit_interval_s:
            self.commit()
        self.metrics.maybe_log()
        return batch

    def _apply_until_written(self, messages: list[Message], stop: threading.Event) -> bool:
        """Apply, retrying while OpenSearch is unreachable or overloaded; False if asked to stop first."""
        attempt = 0
        while not stop.is_set():
            try:
                self._apply(messages)
                return True
            except (SearchConnectionError, TransportError) as error:
                if isinstance(error, TransportError) and not isinstance(error, SearchConnectionError) \
                        and error.status_code not in (429, 502, 503, 504):
                    raise
                self._cache.clear()  # documents folded but not written must not be reused
                backoff = min(MAX_BACKOFF_S, 0.5 * 2 ** attempt)
                log.warning("user contexts not written (%s); retrying in %.1fs", error, backoff)
                stop.wait(backoff)
                attempt += 1
        return False

    def _apply(self, messages: list[Message]) -> None:
        by_user: dict[str, list[Message]] = {}
        for message in messages:
            by_user.setdefault(message.record.user_id, []).append(message)
        vectors = self.vectors.vectors(self.folder.positive_items(messages))
        pending = by_user
        for _ in range(MAX_RACES + 1):
            current = self._read(pending)
            writes = {}
            for user_id, user_messages in pending.items():
                stored = current.get(user_id)
                folded = self.folder.fold(stored.doc if stored else None, user_id, user_messages, vectors)
                if folded is not None:
                    writes[user_id] = (folded, stored.version if stored else None)
            try:
                written, lost = self.store.save(writes)
            except Exception:
                self._cache.clear()
                raise
            self._remember(written)
            self.metrics.add("contexts.written", len(written))
            self.metrics.add("applied", sum(len(pending[u]) for u in written))
            if not lost:
                return
            self.metrics.add("contexts.races", len(lost))
            for user_id in lost:
                self._cache.pop(user_id, None)
            pending = {user_id: by_user[user_id] for user_id in lost}
        raise RuntimeError(f"user contexts {sorted(pending)[:5]} kept changing underneath; another updater "
                           "seems to own their partitions")

    def _read(self, users: dict[str, Any]) -> dict[str, Stored]:
        found = {u: self._cache[u] for u in users if u in self._cache}
        missing = [u for u in users if u not in found]
        if missing:
            found.update(self.store.load(missing))
            self.metrics.add("contexts.read", len(missing))
        return found

    def _remember(self, written: dict[str, Stored]) -> None:
        if not self.cache_users:
            return
        for user_id, stored in written.items():
            self._cache[user_id] = stored
            self._cache.move_to_end(user_id)
        while len(self._cache) > self.cache_users:
            self._cache.popitem(last=False)

    def commit(self) -> None:
        owned = self.inbox.assignment()
        offsets = {tp: offset for tp, offset in self._processed.items() if tp in owned}
        try:
            self.inbox.commit(offsets)
        except CommitFailedError as error:  # lost the partitions meanwhile; the new owner skips what we did
            log.warning("offset commit refused (%s); redelivered messages will be skipped per user", error)
        self._committed_at = time.monotonic()

    def positions(self) -> dict[TopicPartition, int]:
        return {tp: self.inbox.position(tp) for tp in self.inbox.assignment()}

    def run(self, stop: threading.Event, targets: dict[TopicPartition, int] | None = None) -> dict[str, float]:
        """Until ``stop`` is set, or (with ``targets``) until every owned partition reaches its target."""
        try:
            while not stop.is_set():
                self.step(stop)
                if targets is not None and self.inbox.caught_up(targets, self.positions()):
                    break
            self.commit()
        finally:
            self.inbox.close()
        return self.metrics.snapshot()


def build_updater(settings: Settings, instance_id: str | None = None,
                  vectors: ItemVectors | None = None) -> ContextUpdater:
    """An updater wired to the configured topics, lake (known items) and OpenSearch."""
    k, s = settings.kafka, settings.streaming
    items = LakeItems(Lake(settings), s.known_items_refresh_s)
    validator = Validator(items, s.max_future_skew_s)
    metrics = Metrics("context")
    bus = EventBus(settings, client_id="hybridrec-context")
    inbox = Inbox(bus, s.context_group, {k.events_topic: validator.event, k.queries_topic: validator.query},
                  metrics, instance_id=instance_id, poll_ms=s.context_poll_ms,
                  max_records=s.context_batch_messages, fetch_max_wait_ms=s.context_poll_ms)
    store = ContextStore.from_settings(settings)
    store.ensure_index()
    folder = ContextFolder(ContextRules.from_settings(settings), make_query_tagger(
        settings, reader=settings.streaming.query_tagger, cache_size=STREAM_TAGGER_CACHE), k.events_topic, k.queries_topic)
    if vectors is None:
        vectors = OpenSearchItemVectors.from_settings(settings)
    return ContextUpdater(inbox, store, folder, vectors, items, metrics, s.context_cache_users,
                          s.context_commit_interval_ms)


def run_context(settings: Settings, instance_id: str | None = None, until_caught_up: bool = False) -> dict[str, float]:
    """The `hybridrec stream context` process: keep user contexts fresh until SIGTERM (or caught up)."""
    stop = stop_on_signals()
    targets = None
    if until_caught_up:
        k = settings.kafka
        targets = EventBus(settings).end_offsets([k.events_topic, k.queries_topic])
    updater = build_updater(settings, instance_id)
    log.info("context updater %s in group %s -> index %s", instance_id or "(dynamic member)",
             settings.streaming.context_group, updater.store.index)
    return updater.run(stop, targets)
