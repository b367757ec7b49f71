"""A private streaming world per test (see :mod:`hybridrec.streaming.sandbox`): a small synthetic
catalogue in a throwaway lake, the world's recorded activity to replay, and a way to run the
streaming commands as real processes that can be killed."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridrec.bus import EventBus
from hybridrec.config import Settings, SyntheticSettings, load_settings
from hybridrec.contract import EVENTS, SEARCH_QUERIES
from hybridrec.infra.kafka import ensure_topics
from hybridrec.lake import Lake
from hybridrec.streaming.sink import committed_offsets
from hybridrec.streaming.sandbox import (
    Recording, publish_random_item_vectors, record_synthetic_world, remove, sandbox_env,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class StreamWorld:
    settings: Settings
    env: dict[str, str]  # what a subprocess needs to see the same world
    recording: Recording


def make_world(tmp_path: Path, name: str, n_events: int, **streaming: object) -> StreamWorld:
    """Topics created, catalogue in the lake; ``streaming`` overrides settings of the streaming section."""
    env = sandbox_env(tmp_path, f"test-{name}-{secrets.token_hex(3)}")
    env.update({f"HYBRIDREC__STREAMING__{key.upper()}": str(value) for key, value in streaming.items()})
    settings = load_settings(environ={**os.environ, **env})  # what its child processes see, ports included
    ensure_topics(settings)
    cfg = SyntheticSettings(seed=11, n_users=400, n_places=150, n_clips=400, n_events=n_events, n_days=2)
    return StreamWorld(settings, env, record_synthetic_world(settings, cfg))


def make_cluster_world(tmp_path: Path, name: str, n_events: int, **overrides: object) -> StreamWorld:
    """A world on the cluster topology whose lake is a catalog of its own on the cluster's PostgreSQL server;
    ``overrides`` are settings by section (``streaming__sink_batch_messages=500``)."""
    name = f"test-{name}-{secrets.token_hex(3)}"
    env = {**sandbox_env(tmp_path, name), "HYBRIDREC__INFRA__TOPOLOGY": "cluster",
           "HYBRIDREC__LAKE__CATALOG_NAME": f"t_{name[-6:]}"}
    del env["HYBRIDREC__LAKE__URI"]  # the topology's: postgresql on the cluster's server
    env.update({f"HYBRIDREC__{key.upper()}": str(value) for key, value in overrides.items()})
    settings = load_settings(environ={**os.environ, **env})
    ensure_topics(settings)
    cfg = SyntheticSettings(seed=11, n_users=300, n_places=120, n_clips=300, n_events=n_events, n_days=2)
    return StreamWorld(settings, env, record_synthetic_world(settings, cfg))


def tear_down(world: StreamWorld) -> None:
    remove(world.settings)
    if world.settings.infra.topology == "cluster":  # the catalog's entries live on the shared server
        catalog = Lake(world.settings).catalog
        for namespace in catalog.list_namespaces():
            for identifier in catalog.list_tables(namespace):
                catalog.drop_table(identifier)
            catalog.drop_namespace(namespace)


def publish_vectors(world: StreamWorld, dimension: int = 8) -> dict[tuple[str, str], np.ndarray]:
    """Item vectors as retraining would publish them, behind the world's aliases."""
    return publish_random_item_vectors(world.settings, world.recording, dimension, seed=5)


def start(world: StreamWorld, verb: str, *args: str, log_path: Path) -> subprocess.Popen:
    """`hybridrec stream <verb>` as a child process of its own (so SIGKILL hits it alone)."""
    env = {**os.environ, **world.env, "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "hybridrec.cli", "stream", verb, *args], cwd=PROJECT_ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def stop(process: subprocess.Popen, timeout_s: float = 60) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout_s)


def wait_for(condition, timeout_s: float, every_s: float = 0.5, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def bus_for(world: StreamWorld) -> EventBus:
    return EventBus(world.settings, client_id="test")


def delivery_faults(world: StreamWorld, lake: Lake) -> dict[str, int]:
    """How the lake's events and queries differ from the world's recording: ids missing, ids landed more
    than once, ids that were never recorded (all 0 when the replay landed exactly once)."""
    faults = {}
    for kind, table, column, expected in (("events", EVENTS, "event_id", world.recording.events["event_id"]),
                                          ("queries", SEARCH_QUERIES, "query_id", world.recording.queries["query_id"])):
        landed, recorded = lake.scan(table, columns=(column,))[column].to_pylist(), set(expected.to_pylist())
        faults[f"{kind}_lost"] = len(recorded - set(landed))
        faults[f"{kind}_duplicated"] = len(landed) - len(set(landed))
        faults[f"{kind}_unexpected"] = len(set(landed) - recorded)
    return faults


def assert_landed_exactly_once(world: StreamWorld, lake: Lake) -> dict[str, int]:
    """Every recorded event and query is in the lake once (count and id set), and the sink's offsets committed
    with them are the events topic's ends; returns the (zero) :func:`delivery_faults`."""
    faults = delivery_faults(world, lake)
    assert faults == dict.fromkeys(faults, 0), faults
    topic = world.settings.kafka.events_topic
    bus = bus_for(world)
    try:
        ends = bus.end_offsets([topic])
    finally:
        bus.close()
    assert committed_offsets(lake.table(EVENTS))[topic] == {tp.partition: offset for tp, offset in ends.items()}
    return faults
