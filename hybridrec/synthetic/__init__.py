"""The synthetic world: users, places, clips, reviews, search queries and feed events, with ground truth.

Users hold latent interests over the taxonomy (some drift mid-window); places carry true
attributes; reviews, clip titles and queries are written from taxonomy surface forms; feed events
follow interests mixed with long-tail popularity and exploration. The truth tables record what
generated everything, so later stages (keyword extraction, interest inference, ranking) can be
scored honestly. The same seed gives byte-identical tables: every table draws from its own random
stream, and nothing depends on wall-clock time or dict/set ordering.

Modules: ``common`` (streams, window, regions, sampling), ``text`` (template writers),
``entities`` (users, places, clips), ``catalog`` (item draws), ``content`` (reviews, queries),
``events`` (the day-by-day feed simulation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import pyarrow as pa

from hybridrec.synthetic.catalog import Catalog
from hybridrec.synthetic.common import Window, stream
from hybridrec.synthetic.content import make_queries, make_reviews
from hybridrec.synthetic.entities import (
    Topics, interests_table, make_clips, make_places, make_tastes, make_users, tastes_table, users_table,
)
from hybridrec.synthetic.events import EventSimulator
from hybridrec.config import ServingSettings, SyntheticSettings
from hybridrec.experiments import assign
from hybridrec.contract import (
    CLIPS, EVENTS, PLACES, REVIEWS, SEARCH_QUERIES, TRUTH_ITEM_TAGS, TRUTH_QUERY_LABELS, TRUTH_REVIEW_TAGS,
    TRUTH_USER_INTERESTS, TRUTH_USER_TASTES, USERS, TableSpec,
)
from hybridrec.taxonomy import load_taxonomy

__all__ = ["WorldSummary", "generate_world", "summarize_world"]


def generate_world(cfg: SyntheticSettings, experiment: ServingSettings | None = None
                   ) -> Iterator[tuple[TableSpec, pa.Table]]:
    """Yield (spec, table) chunks conforming to the contract; all chunks of a table are consecutive.

    Events come one table per simulated day, so memory stays bounded; everything else is one or
    two chunks. Users' events carry the arm that ``experiment`` (the feed API's experiment settings;
    the default config's when None) assigns them.
    """
    experiment = experiment or ServingSettings()
    taxonomy, window = load_taxonomy(), Window.of(cfg)
    topics = Topics.of(taxonomy, stream(cfg.seed, "topics"))
    users = make_users(cfg, topics, window, stream(cfg.seed, "users"),
                       lambda user_id: assign(experiment.experiment_name, experiment.experiments, user_id).name)
    yield USERS, users_table(users)
    yield TRUTH_USER_INTERESTS, interests_table(users, topics)

    places, places_table, place_tags = make_places(cfg, taxonomy, topics, window, stream(cfg.seed, "places"))
    clips, clips_table, clip_tags = make_clips(cfg, taxonomy, topics, window, stream(cfg.seed, "clips"))
    yield PLACES, places_table
    yield CLIPS, clips_table
    yield TRUTH_ITEM_TAGS, place_tags
    yield TRUTH_ITEM_TAGS, clip_tags
    tastes = make_tastes(taxonomy, len(users), places, stream(cfg.seed, "tastes"))
    yield TRUTH_USER_TASTES, tastes_table(users, tastes)

    reviews, review_tags = make_reviews(cfg, users, places, window, stream(cfg.seed, "reviews"))
    yield REVIEWS, reviews
    yield TRUTH_REVIEW_TAGS, review_tags

    catalog = Catalog(topics, places, clips, window.start_us)
    query_log, queries, query_labels = make_queries(cfg, taxonomy, topics, users, catalog, window,
                                                    stream(cfg.seed, "queries"))
    yield SEARCH_QUERIES, queries
    yield TRUTH_QUERY_LABELS, query_labels

    for day_table in EventSimulator(cfg, window, topics, users, catalog, query_log, tastes).days():
        yield EVENTS, day_table


@dataclass
class WorldSummary:
    """Rows per table (``namespace.name``) seen on a pass over the world, and how long the pass took."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def track(self, chunks: Iterable[tuple[TableSpec, pa.Table]]) -> Iterator[tuple[TableSpec, pa.Table]]:
        """Pass chunks through while counting; ``seconds`` (the consumer's time included) is set at the end."""
        started = time.perf_counter()
        for spec, table in chunks:
            name = spec.qualified_name
            self.rows[name] = self.rows.get(name, 0) + table.num_rows
            yield spec, table
        self.seconds = time.perf_counter() - started

    @property
    def events(self) -> int:
        return self.rows.get(EVENTS.qualified_name, 0)


def summarize_world(cfg: SyntheticSettings) -> WorldSummary:
    """Generate the world and keep only its counts."""
    summary = WorldSummary()
    for _ in summary.track(generate_world(cfg)):
        pass
    return summary
