"""Prometheus metrics of the feed API, in a registry per app (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


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
        self.degraded = Counter("hybridrec_feed_degraded_responses", "Feeds answered from the local fallback",
                                ["surface", "reason"], registry=self.registry)
        self.responses = Counter("hybridrec_responses", "Responses by route and status", ["route", "status"],
                                 registry=self.registry)
        self.errors = Counter("hybridrec_errors", "Unexpected errors by route", ["route"], registry=self.registry)
        self.events = Counter("hybridrec_events_accepted", "Events and queries produced to Kafka", ["kind"],
                              registry=self.registry)
        self.model_config_match = Gauge("hybridrec_model_config_match",
                                        "1 when the served run was made under this server's model config, 0 when not",
                                        ["surface"], registry=self.registry)
