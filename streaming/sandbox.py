"""A private streaming deployment for tests and benchmarks.

Its own topics, consumer groups, user-context index, item-vector aliases and lake (environment
overrides, so child processes see the same deployment), holding a synthetic world's catalogue, with
the world's recorded activity kept in memory ready to replay. Nothing in it touches the shared
deployment, and :func:`remove` deletes what it created on the services.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from hybridrec.synthetic import generate_world
from hybridrec.bus import delete_topics
from hybridrec.config import Settings, SyntheticSettings
from hybridrec.contract import CLIPS, EVENTS, PLACES, SEARCH_QUERIES, SURFACES
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run
from hybridrec.search import SearchStore
from hybridrec.streaming.replay import in_time_order
from hybridrec.streaming.vectors import Item, publish_item_vectors


def sandbox_env(lake_root: Path, name: str) -> dict[str, str]:
    """``HYBRIDREC__*`` overrides giving ``name`` its own topics, groups, indices and lake under ``lake_root``."""
    return {
        "HYBRIDREC__LAKE__URI": f"sqlite:///{lake_root / 'catalog.db'}",
        "HYBRIDREC__LAKE__WAREHOUSE": (lake_root / "warehouse").as_uri(),
        "HYBRIDREC__KAFKA__EVENTS_TOPIC": f"{name}.events",
        "HYBRIDREC__KAFKA__QUERIES_TOPIC": f"{name}.queries",
        "HYBRIDREC__KAFKA__DEAD_LETTER_TOPIC": f"{name}.dead-letter",
        "HYBRIDREC__STREAMING__SINK_GROUP": f"{name}-sink",
        "HYBRIDREC__STREAMING__CONTEXT_GROUP": f"{name}-context",
        "HYBRIDREC__STREAMING__CONTEXT_INDEX": f"{name}-user-context",
        "HYBRIDREC__STREAMING__ITEM_VECTORS_ALIAS": f"{name}-items-{{surface}}",
        # A sandbox's lake holds no distill run, and what it checks is the stream's mechanics.
        "HYBRIDREC__STREAMING__QUERY_TAGGER": "rules",
    }


@dataclass(frozen=True)
class Recording:
    """Recorded activity (each table in time order) and the catalogue it refers to."""

    events: pa.Table
    queries: pa.Table
    places: list[str]
    clips: list[str]
    dataset: str

    def messages(self):
        return in_time_order([self.events], [self.queries])

    @property
    def size(self) -> int:
        return self.events.num_rows + self.queries.num_rows


def publish_random_item_vectors(settings: Settings, recording: Recording, dimension: int, seed: int = 0
                                ) -> dict[Item, np.ndarray]:
    """Random unit-free vectors for every item, published the way retraining publishes them."""
    rng = np.random.default_rng(seed)
    search, s = SearchStore(settings), settings.streaming
    table: dict[Item, np.ndarray] = {}
    for surface, items in (("place", recording.places), ("clip", recording.clips)):
        vectors = {item: rng.normal(size=dimension).astype(np.float32) for item in items}
        alias = search.alias_name(s.item_vectors_alias.format(surface=surface))
        publish_item_vectors(search, alias, s.item_vector_field, vectors, "v1")
        table.update({(surface, item): v for item, v in vectors.items()})
    return table


def record_synthetic_world(settings: Settings, cfg: SyntheticSettings) -> Recording:
    """Write the world's places and clips into the sandbox lake (validation checks items against them)
    and keep its events and queries for replay."""
    chunks: dict[str, list[pa.Table]] = {}
    for spec, table in generate_world(cfg, settings.serving):
        chunks.setdefault(spec.name, []).append(table)
    lake, run = Lake(settings), new_run(settings, "sandbox-catalogue")
    lake.replace(PLACES, chunks[PLACES.name], run)
    lake.replace(CLIPS, chunks[CLIPS.name], run)
    events = pa.concat_tables(chunks[EVENTS.name]).sort_by("ts")
    queries = pa.concat_tables(chunks[SEARCH_QUERIES.name]).sort_by("ts")
    dataset = (f"synthetic seed={cfg.seed} users={cfg.n_users} places={cfg.n_places} clips={cfg.n_clips} "
               f"events={events.num_rows} queries={queries.num_rows}")
    return Recording(events, queries, pa.concat_tables(chunks[PLACES.name])["item_id"].to_pylist(),
                     pa.concat_tables(chunks[CLIPS.name])["item_id"].to_pylist(), dataset)


def remove(settings: Settings) -> None:
    """Delete the sandbox's topics, user-context index and item-vector indices (the lake is a folder)."""
    k, s = settings.kafka, settings.streaming
    delete_topics(settings, [k.events_topic, k.queries_topic, k.dead_letter_topic])
    search = SearchStore(settings)
    search.client.indices.delete(index=search.alias_name(s.context_index), ignore=404)
    for surface in SURFACES:
        alias = search.alias_name(s.item_vectors_alias.format(surface=surface))
        search.client.indices.delete(index=f"{alias}--*", ignore_unavailable=True)
