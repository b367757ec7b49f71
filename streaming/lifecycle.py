"""Process lifecycle shared by the long-running streaming commands."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so a consumer finishes its batch, commits and leaves cleanly.

    Only the main thread may install handlers; elsewhere (a test's worker thread) the event is
    returned untouched and the caller sets it."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        def handle(signum, _frame):
            log.info("%s received: finishing the current batch", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
    return stop
