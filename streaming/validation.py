"""Incoming messages checked against the data contract: bytes in, a record or a :class:`Rejection` out.

Schema checks (JSON, fields, types, allowed values) come from the contract's pydantic models; on top
of them sit the rules a schema cannot state: the item must exist in the catalogue and belong to the
event's surface, an event other than a search names an item, and a timestamp has a time zone and
is not further in the future than clocks can plausibly disagree. A rejected message is never fatal:
the caller dead-letters it with the reason and moves on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum

from pydantic import ValidationError

from hybridrec.contract import CLIPS, PLACES, EventRecord, EventType, SearchQueryRecord, Surface
from hybridrec.lake import Lake

log = logging.getLogger(__name__)


class Reason(str, Enum):
    """Why a message was rejected; one metric counter and dead-letter ``reason`` header per value."""

    BAD_JSON = "bad-json"
    MISSING_FIELD = "missing-field"
    UNKNOWN_FIELD = "unknown-field"
    UNKNOWN_VALUE = "unknown-value"  # e.g. an event type or surface the contract does not know
    WRONG_TYPE = "wrong-type"
    FUTURE_TIMESTAMP = "future-timestamp"
    MISSING_ITEM = "missing-item"
    UNKNOWN_ITEM = "unknown-item"
    SURFACE_MISMATCH = "surface-mismatch"


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    detail: str


_PYDANTIC_REASONS = {
    "json_invalid": Reason.BAD_JSON,
    "json_type": Reason.BAD_JSON,
    "model_type": Reason.BAD_JSON,  # valid JSON, but not an object
    "missing": Reason.MISSING_FIELD,
    "extra_forbidden": Reason.UNKNOWN_FIELD,
    "literal_error": Reason.UNKNOWN_VALUE,
}


def _schema_rejection(error: ValidationError) -> Rejection:
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0]
    reason = _PYDANTIC_REASONS.get(first["type"], Reason.WRONG_TYPE)
    detail = "; ".join(f"{'.'.join(map(str, p['loc'])) or '<message>'}: {p['msg']}" for p in problems[:3])
    return Rejection(reason, detail)


class KnownItems:
    """Catalogue item ids and the surface each belongs to."""

    def __init__(self, surfaces: Mapping[str, str]):
        self._surfaces = dict(surfaces)

    def __len__(self) -> int:
        return len(self._surfaces)

    def surface(self, item_id: str) -> str | None:
        return self._surfaces.get(item_id)

    def refresh_if_due(self) -> None:
        """A fixed set never changes; :class:`LakeItems` overrides this."""


class LakeItems(KnownItems):
    """The places and clips tables' ids, re-read when either table has a new snapshot (checked every
    ``refresh_s``), so items published after start-up are known without a restart."""

    def __init__(self, lake: Lake, refresh_s: float, clock: Callable[[], float] = time.monotonic):
        self.lake, self.refresh_s, self.clock = lake, refresh_s, clock
        self._versions: tuple[int | None, ...] = ()
        self._checked_at = clock()
        super().__init__({})
        self._load()

    def _table_versions(self) -> tuple[int | None, ...]:
        versions = []
        for spec in (PLACES, CLIPS):
            snapshot = self.lake.table(spec).current_snapshot() if self.lake.exists(spec) else None
            versions.append(snapshot.snapshot_id if snapshot else None)
        return tuple(versions)

    def _load(self) -> None:
        self._versions = self._table_versions()
        surfaces: dict[str, str] = {}
        for spec, surface in ((PLACES, Surface.PLACE.value), (CLIPS, Surface.CLIP.value)):
            if not self.lake.exists(spec):
                log.warning("no %s.%s table: every %s event will be rejected as unknown-item",
                            *spec.identifier, surface)
                continue
            surfaces.update(dict.fromkeys(self.lake.scan(spec, columns=("item_id",))["item_id"].to_pylist(), surface))
        self._surfaces = surfaces
        log.info("known items: %d (places and clips)", len(surfaces))

    def refresh_if_due(self) -> None:
        if self.clock() - self._checked_at < self.refresh_s:
            return
        self._checked_at = self.clock()
        if self._table_versions() != self._versions:
            self._load()


class Validator:
    """Turns message bytes into contract records, or says why not."""

    def __init__(self, items: KnownItems, max_future_skew_s: float, clock: Callable[[], float] = time.time):
        self.items = items
        self.max_future_skew = timedelta(seconds=max_future_skew_s)
        self.clock = clock

    def event(self, raw: bytes) -> EventRecord | Rejection:
        try:
            record = EventRecord.model_validate_json(raw)
        except ValidationError as error:
            return _schema_rejection(error)
        problem = self._check_time(record.ts)
        if problem is None and record.event_type != EventType.SEARCH.value:
            problem = self._check_item(record.item_id, record.surface)
        return problem or record

    def query(self, raw: bytes) -> SearchQueryRecord | Rejection:
        try:
            record = SearchQueryRecord.model_validate_json(raw)
        except ValidationError as error:
            return _schema_rejection(error)
        problem = self._check_time(record.ts)
        for item_id in record.clicked_item_ids or ():
            problem = problem or self._check_item(item_id, record.surface)
        return problem or record

    def _check_time(self, ts: datetime) -> Rejection | None:
        if ts.tzinfo is None:
            return Rejection(Reason.WRONG_TYPE, f"ts: {ts.isoformat()} has no time zone")
        latest = datetime.fromtimestamp(self.clock(), timezone.utc) + self.max_future_skew
        if ts > latest:
            return Rejection(Reason.FUTURE_TIMESTAMP, f"ts: {ts.isoformat()} is after {latest.isoformat()}")
        return None

    def _check_item(self, item_id: str | None, surface: str | None) -> Rejection | None:
        if item_id is None:
            return Rejection(Reason.MISSING_ITEM, "item_id: required unless event_type is 'search'")
        known = self.items.surface(item_id)
        if known is None:
            return Rejection(Reason.UNKNOWN_ITEM, f"item_id: {item_id!r} is not a known place or clip")
        if surface is not None and known != surface:
            return Rejection(Reason.SURFACE_MISMATCH, f"item_id: {item_id!r} is a {known}, not a {surface}")
        return None
