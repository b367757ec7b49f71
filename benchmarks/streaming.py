"""Streaming benchmark: freshness of user contexts under steady load, and sustained throughput of the
lake sink and the context updater, against the real Kafka, OpenSearch and Iceberg.

    hybridrec bench streaming                      # defaults below, writes streaming.json in the results folder
    hybridrec bench streaming --events 100000 --rate 500 --probes 100

Everything runs in its own topics, consumer groups, user-context index, item-vector alias and
throwaway lake (under ``.hybridrec/bench/``), all removed afterwards. The data is a synthetic world
(catalogue, item vectors, recorded events and queries).

* Freshness: the sink and the context updater run as their own processes (as deployed) while this
  process replays recorded activity at ``--rate`` messages/s; probes (a like by a dedicated user)
  are sent one at a time and timed from just before ``send`` until a GET of the user's context (what
  serving does) shows them.
* Ingest, end to end (``ingest_*`` keys): the sink runs as its own process and has joined its group
  before this process produces the whole recorded world at full speed, so producer and sink run
  concurrently: the producer's rate while the sink consumes, and the end-to-end rate, messages over
  the seconds from the first send to the Iceberg commit (its snapshot's timestamp) whose Kafka offsets
  cover the last message of each topic.
* Backlog drain (``backlog_*`` keys): a backlog of the recorded world is produced first with no consumer
  running, then each consumer drains it alone (as its own processes, timed from joining the group to
  the last commit): the sink with one member, the context updater with one and with
  ``--context-members``. A drain reads what is already in Kafka, so it is no ingest rate.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.benchmarks import code_state, positive, write_result
from hybridrec.bus import EventBus, delete_topics, encode
from hybridrec.config import Settings, SyntheticSettings, load_settings
from hybridrec.contract import EVENTS, SEARCH_QUERIES
from hybridrec.infra.kafka import ensure_topics
from hybridrec.lake import Lake
from hybridrec.logs import configure_logging
from hybridrec.search import SearchStore
from hybridrec.streaming.context_store import ContextStore
from hybridrec.streaming.replay import replay
from hybridrec.streaming.sink import offsets_lineage
from hybridrec.streaming.sandbox import (
    Recording, publish_random_item_vectors, record_synthetic_world, remove, sandbox_env,
)

log = logging.getLogger("hybridrec.bench.streaming")

VECTOR_DIMENSION = 64
PROBE_USERS = 8
PROBE_GAP_S = (0.05, 0.15)  # pause between probes, drawn uniformly
INTO_LAKE_TIMEOUT_S = 1800.0  # the sink must have committed everything produced within this


def start_process(verb: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hybridrec.cli", "stream", verb, "--instance-id", f"bench-{verb}"],
            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 4)


def measure_freshness(settings: Settings, env: dict[str, str], world: Recording, rate: float, probes: int,
                      logs: Path) -> dict[str, Any]:
    """Probe latencies (produce -> visible to a GET) while the system runs under steady load."""
    processes = [start_process(verb, env, logs / f"{verb}.log") for verb in ("context", "sink")]
    stop = threading.Event()
    load_bus = EventBus(settings, client_id="bench-load")
    outcome: dict[str, Any] = {}
    load = threading.Thread(target=lambda: outcome.update(replayed=replay(
        load_bus, _until(world.messages(), stop), rate, None)), daemon=True)
    probe_bus, serving = EventBus(settings, client_id="bench-probe"), ContextStore.from_settings(settings)
    rng = np.random.default_rng(1)
    latencies: list[float] = []
    sent_per_user = [0] * PROBE_USERS
    try:
        _wait(lambda: serving.client.indices.exists(index=serving.index), 120, "the context updater to start")
        load.start()
        time.sleep(5.0)  # let the load settle before measuring
        load_started = time.perf_counter()
        for i in range(probes + 5):
            user = i % PROBE_USERS
            user_id = f"bench-probe-{user}"
            clip = world.clips[int(rng.integers(len(world.clips)))]
            event = {"event_id": f"probe-{i}", "user_id": user_id, "item_id": clip, "surface": "clip",
                     "event_type": "like", "ts": datetime.now(timezone.utc)}
            sent_per_user[user] += 1
            sent = time.perf_counter()
            probe_bus.publish(settings.kafka.events_topic, user_id, encode(event))
            probe_bus.producer.flush()
            _wait(lambda: (serving.get(user_id) or {}).get("events_applied", 0) >= sent_per_user[user], 60,
                  f"probe {i}", every_s=0.002)
            if i >= 5:  # the first ones warm the caches
                latencies.append(time.perf_counter() - sent)
            time.sleep(float(rng.uniform(*PROBE_GAP_S)))
        measured_s = time.perf_counter() - load_started
    finally:
        stop.set()
        load.join(timeout=30)
        for process in processes:
            process.terminate()
            process.wait(timeout=60)
        load_bus.close()
        probe_bus.close()
    log.info("freshness: %d probes, p50 %.3fs p95 %.3fs p99 %.3fs", len(latencies),
             np.percentile(latencies, 50), np.percentile(latencies, 95), np.percentile(latencies, 99))
    return {
        "freshness_p50_s": percentile(latencies, 50), "freshness_p95_s": percentile(latencies, 95),
        "freshness_p99_s": percentile(latencies, 99), "freshness_max_s": round(max(latencies), 4),
        "freshness_probes": len(latencies), "freshness_load_messages_per_s": rate,
        "freshness_measured_s": round(measured_s, 1),
        "freshness_load_achieved_messages_per_s": round(outcome["replayed"].per_second) if outcome else None,
    }


def _until(messages, stop: threading.Event):
    for message in messages:
        if stop.is_set():
            return
        yield message


def _wait(condition, timeout_s: float, what: str, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every_s)


def measure_ingest(settings: Settings, env: dict[str, str], world: Recording, logs: Path) -> dict[str, Any]:
    """Producer and sink concurrently: the sink (its own process, a fresh group) joins first, then the whole
    recorded world is produced at full speed; timed from the first send to the Iceberg commit that covers
    the last message of each topic."""
    key = "HYBRIDREC__STREAMING__SINK_GROUP"
    log_path = logs / "ingest-sink.log"
    sink = start_process("sink", {**env, key: f"{env[key]}-ingest"}, log_path)
    try:
        _wait(lambda: "assigned" in log_path.read_text(errors="replace"), 120, "the sink to join its group")
        bus = EventBus(settings, client_id="bench-ingest")
        started = time.time()
        produced = replay(bus, world.messages(), 0, None)
        k = settings.kafka
        ends = bus.end_offsets([k.events_topic, k.queries_topic])
        bus.close()
        lake, committed = Lake(settings), {}
        for topic, spec in ((k.events_topic, EVENTS), (k.queries_topic, SEARCH_QUERIES)):
            targets = {tp.partition: end for tp, end in ends.items() if tp.topic == topic}

            def covered() -> bool:
                if sink.poll() is not None:
                    raise RuntimeError(f"the sink exited; log {log_path}:\n{log_path.read_text()[-2000:]}")
                committed[topic] = first_commit_covering(lake.table(spec), topic, targets)
                return committed[topic] is not None

            _wait(covered, INTO_LAKE_TIMEOUT_S, f"the sink to commit everything produced to {topic}")
    finally:
        sink.terminate()
        sink.wait(timeout=60)
    messages, seconds = produced.events + produced.queries, max(committed.values()) - started
    log.info("ingest: %d messages produced at %.0f/s while the sink ran; in Iceberg after %.1fs: %.0f/s", messages,
             produced.per_second, seconds, messages / seconds)
    return {"ingest_messages": messages, "ingest_producer_messages_per_s": round(produced.per_second),
            "ingest_end_to_end_s": round(seconds, 1), "ingest_end_to_end_messages_per_s": round(messages / seconds)}


def first_commit_covering(table, topic: str, targets: dict[int, int]) -> float | None:
    """Epoch seconds of the oldest commit of ``table`` whose Kafka offsets on ``topic`` reach ``targets``
    (partition -> next offset), or None while the newest does not."""
    reached = None
    for snapshot, raw in offsets_lineage(table):  # newest first
        if raw is None:
            continue
        offsets = json.loads(raw).get(topic, {})
        if not all(offsets.get(str(partition), 0) >= end for partition, end in targets.items()):
            break
        reached = snapshot.timestamp_ms / 1000
    return reached


def measure_backlog_drain(settings: Settings, env: dict[str, str], world: Recording, context_members: int,
                          logs: Path) -> dict[str, Any]:
    """Produce the whole recorded world as a backlog with no consumer running, then let each consumer
    drain it alone: the sink with one member, the context updater with one and with ``context_members``."""
    bus = EventBus(settings, client_id="bench-backlog")
    produced = replay(bus, world.messages(), 0, None)
    bus.close()
    results: dict[str, Any] = {"backlog_messages": produced.events + produced.queries,
                               "backlog_producer_alone_messages_per_s": round(produced.per_second)}
    runs = [("sink", 1, "sink"), ("context", 1, "context")]
    if context_members > 1:
        runs.append(("context", context_members, f"context_{context_members}_members"))
    search = SearchStore(settings)
    for verb, members, name in runs:
        # A fresh group (and user-context index) per run, so each drains everything and writes every update.
        keys = [f"HYBRIDREC__STREAMING__{verb.upper()}_GROUP", "HYBRIDREC__STREAMING__CONTEXT_INDEX"]
        run_env = {**env, **{key: f"{env[key]}-{name}" for key in keys}}
        try:
            done, seconds = drain(verb, members, run_env, logs / name)
        finally:
            search.client.indices.delete(index=search.alias_name(run_env[keys[1]]), ignore=404)
        results[f"backlog_drain_{name}_messages_per_s"] = round(done / seconds)
        results[f"backlog_drain_{name}_s"] = round(seconds, 1)
        log.info("%s drained %d messages in %.1fs: %.0f/s", name, done, seconds, done / seconds)
    return results


def drain(verb: str, members: int, env: dict[str, str], log_stem: Path) -> tuple[int, float]:
    """Run ``members`` processes until each has caught up; (messages handled, seconds of the slowest),
    timed by the processes themselves from joining to their last commit (interpreter start-up excluded)."""
    logs = [log_stem.with_name(f"{log_stem.name}-{i}.log") for i in range(members)]
    processes = []
    for i, log_path in enumerate(logs):
        with log_path.open("ab") as out:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "hybridrec.cli", "stream", verb, "--instance-id", f"bench-{i}",
                 "--until-caught-up"], env={**os.environ, **env}, stdout=out,
                stderr=subprocess.STDOUT))
    for process, log_path in zip(processes, logs):
        if process.wait(timeout=3600) != 0:
            raise RuntimeError(f"{verb} member failed; log {log_path}:\n{log_path.read_text()[-2000:]}")
    summaries = [json.loads(text[text.rindex("\n{") + 1:]) for text in (p.read_text() for p in logs)]
    done = sum(s.get("committed" if verb == "sink" else "applied", 0) for s in summaries)
    return done, max(s["seconds"] for s in summaries)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=positive(int), default=200_000, help="recorded events in the backlog")
    parser.add_argument("--rate", type=positive(float), default=1000.0, help="steady load during the freshness probes (msg/s)")
    parser.add_argument("--probes", type=positive(int), default=300)
    parser.add_argument("--context-members", type=positive(int), default=2, help="also drain with this many updaters")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--result", default="streaming", help="file stem in the results folder")
    args = parser.parse_args(argv)
    configure_logging("INFO")
    code_at_start, load_at_start = code_state(), os.getloadavg()
    name = f"bench-{datetime.now(timezone.utc):%m%d%H%M}-{secrets.token_hex(2)}"
    invoked = load_settings()  # the configuration the benchmark was run with, before its sandbox overrides
    root = invoked.home_path / "bench" / name
    root.mkdir(parents=True)
    env = sandbox_env(root, name)
    settings = load_settings(environ={**os.environ, **env})
    started = time.perf_counter()
    ensure_topics(settings)
    try:
        world = record_synthetic_world(settings, SyntheticSettings(
            seed=3, n_events=args.events, n_days=max(2, args.events // 40_000)))
        publish_random_item_vectors(settings, world, VECTOR_DIMENSION)
        metrics = measure_freshness(settings, env, world, args.rate, args.probes, root)
        if not args.skip_throughput:
            # Fresh topics for each: what is produced is exactly the recorded world.
            with _fresh_topics(root, env, f"{name}-ingest") as (ingest_settings, ingest_env):
                metrics.update(measure_ingest(ingest_settings, ingest_env, world, root))
            with _fresh_topics(root, env, f"{name}-backlog") as (backlog_settings, backlog_env):
                metrics.update(measure_backlog_drain(backlog_settings, backlog_env, world, args.context_members, root))
    finally:
        remove(settings)
        shutil.rmtree(root, ignore_errors=True)
    metrics.update({
        "target_freshness_p95_s": 1.0, "target_events_per_s": 5000,
        "note": ("the sink and the updater are single Python processes; scale out by adding group members"),
        "wall_s": round(time.perf_counter() - started, 1),
    })
    command = "hybridrec bench streaming " + " ".join(argv if argv is not None else sys.argv[1:])
    path = write_result(args.result, "streaming", world.dataset, command.strip(), metrics, invoked, load_at_start,
                        code_at_start)
    print(path.read_text())


@contextmanager
def _fresh_topics(root: Path, env: dict[str, str], name: str):
    """(settings, env) of ``env`` with topics of their own, created now and deleted afterwards."""
    topics = sandbox_env(root, name)
    fresh_env = {**env, **{k: v for k, v in topics.items() if k.startswith("HYBRIDREC__KAFKA__")}}
    fresh = load_settings(environ={**os.environ, **fresh_env})
    ensure_topics(fresh)
    try:
        yield fresh, fresh_env
    finally:
        delete_topics(fresh, _topics(fresh))


def _topics(settings: Settings) -> list[str]:
    k = settings.kafka
    return [k.events_topic, k.queries_topic, k.dead_letter_topic]


if __name__ == "__main__":
    main()
