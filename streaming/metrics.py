"""Counters of a streaming process, logged as one line every few seconds and returned at exit.

Names are dotted (``consumed``, ``rejected.bad-json``, ``lake.commits``); the periodic line shows
totals and the rate since the previous line, which is what an operator watching a replay wants.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable


class Metrics:
    def __init__(self, component: str, log_every_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.component = component
        self.counters: Counter[str] = Counter()
        self.log_every_s = log_every_s
        self.clock = clock
        self.started = self._last_at = clock()
        self._last: Counter[str] = Counter()
        self._log = logging.getLogger(f"hybridrec.streaming.{component}")

    def add(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def maybe_log(self, rate_of: str = "consumed") -> None:
        """Log totals (and the rate of ``rate_of``) if ``log_every_s`` has passed since the last line."""
        now = self.clock()
        if now - self._last_at < self.log_every_s:
            return
        rate = (self.counters[rate_of] - self._last[rate_of]) / (now - self._last_at)
        self._log.info("%s: %.0f %s/s | %s", self.component, rate, rate_of,
                       " ".join(f"{k}={v}" for k, v in sorted(self.counters.items())))
        self._last, self._last_at = Counter(self.counters), now

    def snapshot(self) -> dict[str, float]:
        elapsed = self.clock() - self.started
        return {**dict(sorted(self.counters.items())), "seconds": round(elapsed, 2)}
