"""Logging set-up shared by every command: one line per event, with the time and the component."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT, datefmt="%H:%M:%S", force=True)
    for noisy in ("py4j", "kafka", "opensearch", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # opensearch-py logs every failed request with its traceback; our clients log their retries and the
    # command reports the error in one line, so only its errors pass
    logging.getLogger("opensearch").setLevel(logging.ERROR)
