"""Degraded mode: the last published popular lists, read from a local file when OpenSearch or a model fails.

The file is written by every retrain publish (its shape: :mod:`hybridrec.fallback`); it is re-read
when it changes, so a new run's lists reach a server that has been degraded all along. A place feed
answers from the region the request is in: the region whose centre is nearest to the request's (or
the user's known home) location, its places within the radius first; without a location, the
popular list of every allowed region.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridrec.features.ranking import haversine_km

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FallbackItem:
    item_id: str
    title: str | None
    topic_path: str | None
    region: str | None


class FallbackFeed:
    def __init__(self, path: Path):
        self.path = path
        self._lists: dict[str, Any] = {}
        self._mtime: float | None = None
        self._lock = threading.Lock()

    def _current(self) -> dict[str, Any]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        with self._lock:
            if mtime != self._mtime:
                try:
                    self._lists = json.loads(self.path.read_text())
                    self._mtime = mtime
                except (OSError, ValueError) as err:  # unreadable file: keep the lists we had
                    log.warning("fallback lists %s unreadable (%s); keeping the previous ones", self.path, err)
            return self._lists

    def items(self, surface: str, limit: int, location: tuple[float, float] | None = None,
              radius_km: float | None = None, regions: Collection[str] = (),
              exclude: frozenset[str] = frozenset()) -> list[FallbackItem]:
        """Most popular items of the surface, minus ``exclude``. Places: those of the region nearest to
        ``location`` (within ``radius_km`` first), else of every region in ``regions`` (empty: all)."""
        lists = self._current().get(surface, {})
        meta = lists.get("items", {})
        by_region = lists.get("regions", {})
        allowed = [r for r in by_region if not regions or r in regions]
        ranked: list[str] = lists.get("all", [])
        if regions:
            ranked = [i for i in ranked if meta.get(i, {}).get("region") in allowed]
        region = self._nearest(lists.get("centres", {}), allowed, location)
        if region is not None:
            ranked = by_region[region]
            if radius_km is not None:
                ranked = sorted(ranked, key=lambda i: not self._within(meta.get(i, {}), location, radius_km))
        return [FallbackItem(i, meta.get(i, {}).get("title"), meta.get(i, {}).get("topic_path"),
                             meta.get(i, {}).get("region"))
                for i in ranked if i not in exclude][:limit]

    @staticmethod
    def _nearest(centres: dict[str, list[float]], allowed: list[str],
                 location: tuple[float, float] | None) -> str | None:
        known = [r for r in allowed if r in centres]
        if location is None or not known:
            return None
        return min(known, key=lambda r: float(haversine_km(location[0], location[1], *centres[r])))

    @staticmethod
    def _within(item: dict[str, Any], location: tuple[float, float], radius_km: float) -> bool:
        if item.get("lat") is None or item.get("lon") is None:
            return False
        return float(haversine_km(location[0], location[1], item["lat"], item["lon"])) <= radius_km

    @property
    def run_id(self) -> str | None:
        return self._current().get("run_id")

    @property
    def available(self) -> bool:
        return bool(self._current())
