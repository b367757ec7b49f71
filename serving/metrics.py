"""Prometheus metrics of the feed API, in a registry per app (tests build many apps in one process).

Under ``hybridrec serve`` with several workers, prometheus_client's multiprocess mode makes ``/metrics``
the whole server's: the command sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh directory before the
workers start, every worker writes its values there, and a scrape, whichever worker answers it,
aggregates the directory (:meth:`ServingMetrics.exposition`). Labels are bounded: routes are
templates (``/v1/feed/{user_id}``), never raw paths.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared metrics directory of a multi-worker server, or None in a single process."""
    return os.environ.get(MULTIPROCESS_DIR_ENV) or None


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram("hybridrec_request_seconds", "Request latency by route",
                                         ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stage_seconds = Histogram("hybridrec_feed_stage_seconds", "Feed pipeline latency by stage",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.candidates = Counter("hybridrec_feed_candidates", "Candidates proposed, by surface and source",
                                  ["surface", "source"], registry=self.registry)
        self.rule_removals = Counter("hybridrec_feed_rule_removals", "Candidates removed by a rule",
                                     ["rule"], registry=self.registry)
        self.segments = Counter("hybridrec_feed_segments", "Personalised feeds by surface and user segment "
                                "(features/segments.py: the offline evaluation's segments)",
                                ["surface", "segment"], registry=self.registry)
        self.degraded = Counter("hybridrec_feed_degraded_responses", "Feeds answered from the local fallback",
                                ["surface", "reason"], registry=self.registry)
        self.responses = Counter("hybridrec_responses", "Responses by route and status", ["route", "status"],
                                 registry=self.registry)
        self.errors = Counter("hybridrec_errors", "Unexpected errors by route", ["route"], registry=self.registry)
        self.events = Counter("hybridrec_events_accepted", "Events and queries produced to Kafka", ["kind"],
                              registry=self.registry)
        # per experiment arm, what an experiment dashboard watches live (the report reads the lake)
        self.feeds = Counter("hybridrec_feeds", "Feeds answered, by surface, experiment arm and whether degraded",
                             ["surface", "variant", "degraded"], registry=self.registry)
        self.arm_events = Counter("hybridrec_arm_events", "Events accepted, by experiment arm and event type",
                                  ["variant", "event_type"], registry=self.registry)
        self.model_config_match = Gauge("hybridrec_model_config_match",
                                        "1 when the served run was made under this server's model config, 0 when not",
                                        ["surface"], registry=self.registry,
                                        multiprocess_mode="min")  # any worker on another config: 0
        # one series per live worker (multiprocess mode adds the pid label): how evenly the kernel spreads load
        self.worker_responses = Gauge("hybridrec_worker_responses", "Responses answered by this worker process",
                                      registry=self.registry, multiprocess_mode="liveall")

    def exposition(self) -> bytes:
        """The text format of every worker's metrics (multiprocess mode), else of this app's registry."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
