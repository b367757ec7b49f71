"""Warm before ready: a worker starts answering only once a first feed of each surface would be fast.

The app's start-up (:func:`hybridrec.serving.app.create_app`'s lifespan) runs :meth:`WarmUp.run`:
:meth:`~hybridrec.serving.pipeline.FeedPipeline.warm` per surface, retried while OpenSearch is merely
slow (a cold index's first queries can take longer than the search timeout) for up to
``serving.warmup_timeout_s``. Uvicorn opens a worker's listener only after start-up, so with the
workers sharing one socket the connections go to the workers that are warm. What cannot get warm by
waiting (OpenSearch refusing connections, nothing published, a missing ranker) ends the wait at once:
the worker serves degraded feeds rather than none, keeps trying in the background, and ``/readyz``
reports ``warm: false`` until it succeeds.
"""

from __future__ import annotations

import logging
import threading
import time

from opensearchpy.exceptions import ConnectionError as SearchUnreachable
from opensearchpy.exceptions import ConnectionTimeout, OpenSearchException

from hybridrec.serving.models import ModelUnavailable, ServedRunUnreadable
from hybridrec.serving.pipeline import FeedPipeline

log = logging.getLogger(__name__)

SURFACES = ("place", "clip")
RETRY_PAUSE_S = 1.0
BACKGROUND_RETRY_S = 10.0


def _worth_waiting(err: Exception) -> bool:
    """Whether waiting can cure ``err``: slowness can, a refused connection or nothing to serve cannot."""
    if isinstance(err, ConnectionTimeout):
        return True
    if isinstance(err, SearchUnreachable):
        return False
    if isinstance(err, ServedRunUnreadable):
        return "timed out" in str(err).lower() or "timeout" in str(err).lower()
    return not isinstance(err, ModelUnavailable)


class WarmUp:
    def __init__(self, pipeline: FeedPipeline, timeout_s: float):
        self.pipeline, self.timeout_s = pipeline, timeout_s
        self.warm: set[str] = set()
        self._stop = threading.Event()

    @property
    def done(self) -> bool:
        return self.warm >= set(SURFACES)

    def _attempt(self, recheck: bool) -> None:
        for surface in SURFACES:
            if surface not in self.warm:
                start = time.perf_counter()
                self.pipeline.warm(surface, recheck=recheck)
                self.warm.add(surface)
                log.info("%s surface warm in %.1f s", surface, time.perf_counter() - start)

    def run(self) -> bool:
        """Warm every surface, waiting out slowness for up to ``timeout_s``; True when warm."""
        deadline = time.monotonic() + self.timeout_s
        recheck = False
        while True:
            try:
                self._attempt(recheck)
                return True
            except (OpenSearchException, LookupError, ModelUnavailable) as err:
                if not _worth_waiting(err) or time.monotonic() + RETRY_PAUSE_S >= deadline:
                    log.warning("not warm (%s); serving anyway, readiness says so, warming goes on in the background",
                                err)
                    return False
                log.info("warming: %s; trying again", err)
            recheck = True
            time.sleep(RETRY_PAUSE_S)

    def keep_trying(self) -> None:
        """Retry in the background until warm or :meth:`stop`."""
        def loop() -> None:
            while not self._stop.wait(BACKGROUND_RETRY_S):
                try:
                    self._attempt(recheck=True)
                    return
                except (OpenSearchException, LookupError, ModelUnavailable) as err:
                    log.info("still not warm: %s", err)

        threading.Thread(target=loop, name="warm-up", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
