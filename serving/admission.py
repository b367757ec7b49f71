"""Load shedding: a feed that cannot start within ``serving.max_queue_ms`` of arriving is not queued.

Without it a server past its capacity queues requests without bound and every answer comes
late (16 s at p99 once, at 100 req/s). Two limits keep the wait bounded:

* ``serving.max_concurrent_feeds`` pipelines run at once per worker. A pipeline is mostly Python
  under one GIL plus short OpenSearch round trips: a few at once keep the CPU and OpenSearch busy,
  more only take turns on the GIL and stretch every one of them (FastAPI's 40 threads did);
* a request waits for a slot at most until ``max_queue_ms`` after it reached the app; then it is
  answered from the fallback list, marked degraded. So at most ``rate × max_queue_ms`` requests
  wait at any time, however far the offered rate exceeds the capacity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

ARRIVED = "arrived_s"  # request state key (``scope["state"]``): when the request reached the app, perf_counter


class Admission:
    def __init__(self, slots: int, max_queue_ms: float, clock: Callable[[], float] = time.perf_counter):
        self.slots, self.max_queue_s, self.clock = slots, max_queue_ms / 1000, clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore = asyncio.Semaphore(slots)

    def _slots(self) -> asyncio.Semaphore:
        """The semaphore of the running loop: a TestClient used without ``with`` gives each request a new loop."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._semaphore = loop, asyncio.Semaphore(self.slots)
        return self._semaphore

    @asynccontextmanager
    async def slot(self, arrived: float) -> AsyncIterator[bool]:
        """True while a pipeline slot is held; False if none came free before the request's deadline."""
        semaphore = self._slots()
        remaining = arrived + self.max_queue_s - self.clock()
        try:
            if remaining <= 0:
                raise TimeoutError
            await asyncio.wait_for(semaphore.acquire(), remaining)
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            semaphore.release()

