"""Degraded mode: the last published popular lists, read from a local file when OpenSearch or a model fails.

The file is written by every retrain publish (:func:`hybridrec.batch.publish.fallback_path`); it is
re-read when it changes, so a new run's lists reach a server that has been degraded all along.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
                except (OSError, ValueError) as err:  # half-written file: keep the lists we had
                    log.warning("fallback lists %s unreadable (%s); keeping the previous ones", self.path, err)
            return self._lists

    def items(self, surface: str, region: str | None, limit: int, exclude: frozenset[str] = frozenset()) -> list[str]:
        """Most popular items of the surface (the region's list for places when known), minus ``exclude``."""
        lists = self._current().get(surface, {})
        ranked = lists.get(region) if region and region in lists else lists.get("all", [])
        return [i for i in ranked if i not in exclude][:limit]

    @property
    def run_id(self) -> str | None:
        return self._current().get("run_id")

    @property
    def available(self) -> bool:
        return bool(self._current())
