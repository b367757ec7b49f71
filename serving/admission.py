"""Load shedding: a feed that cannot start within ``serving.max_queue_ms`` of arriving is not queued.

Without it a server past its capacity queues requests without bound and every answer comes
late (16 s at p99 once, at 100 req/s). Three rules keep the wait bounded:

* ``serving.max_concurrent_feeds`` pipelines run at once per worker (default 1). A pipeline is mostly
  Python under one GIL: two at once take turns on it and stretch each other (FastAPI's 40 threads
  did so without bound); the OpenSearch waits are filled by another worker process instead;
* a request waits for a slot at most until ``max_queue_ms`` after it reached the app; then it is
  answered from the fallback list, marked degraded. So at most ``rate × max_queue_ms`` requests
  wait at any time, however far the offered rate exceeds the capacity;
* a request that would only join a queue too long to drain before its deadline (the waiters ahead
  of it × the recent time a feed holds a slot) is answered from the fallback list on arrival: it
  would be shed anyway, and waiting out its deadline first only made it late and kept the loop busy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

ARRIVED = "arrived_s"  # request state key (``scope["state"]``): when the request reached the app, perf_counter
SERVICE_SMOOTHING = 0.1  # weight of the latest feed in the moving average of the time a feed holds a slot


class Admission:
    def __init__(self, slots: int, max_queue_ms: float, clock: Callable[[], float] = time.perf_counter):
        self.slots, self.max_queue_s, self.clock = slots, max_queue_ms / 1000, clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore = asyncio.Semaphore(slots)
        self.waiting = 0  # requests waiting for a slot
        self.service_s = 0.0  # moving average of the time a feed holds a slot (0 until one has run)

    def _slots(self) -> asyncio.Semaphore:
        """The semaphore of the running loop: a TestClient used without ``with`` gives each request a new loop."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._semaphore = loop, asyncio.Semaphore(self.slots)
        return self._semaphore

    def expected_wait_s(self) -> float:
        """How long a request arriving now would wait for a slot: none while one is free; else its turn
        comes after the waiters ahead of it, ``slots`` at a time, plus what remains of the feeds running
        (half a feed on average)."""
        if not self._slots().locked():
            return 0.0
        return (self.waiting / self.slots + 0.5) * self.service_s

    @asynccontextmanager
    async def slot(self, arrived: float) -> AsyncIterator[bool]:
        """True while a pipeline slot is held; False if none could come free before the request's deadline."""
        semaphore = self._slots()
        remaining = arrived + self.max_queue_s - self.clock()
        try:
            if remaining <= 0 or self.expected_wait_s() > remaining:
                raise TimeoutError
            if semaphore.locked():
                self.waiting += 1
                try:
                    await asyncio.wait_for(semaphore.acquire(), remaining)
                finally:
                    self.waiting -= 1
            else:
                await semaphore.acquire()  # free: taken at once, without wait_for's task
        except TimeoutError:
            yield False
            return
        started = self.clock()
        try:
            yield True
        finally:
            semaphore.release()
            held = self.clock() - started
            self.service_s += SERVICE_SMOOTHING * (held - self.service_s) if self.service_s else held
