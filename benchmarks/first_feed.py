"""First-feed latency: how soon a fresh `hybridrec serve` (and a server right after a publish) answers well.

``hybridrec bench first-feed`` runs :func:`run_benchmark`: it starts the server as ``hybridrec serve``
does (``serving.workers`` processes; each warms itself before it accepts connections, see
:mod:`hybridrec.serving.warmup`), measures the time until ``/healthz`` first answers and until
``/readyz`` says ready, then sends the first ``feeds`` feeds one at a time, each on a new connection so
the kernel spreads them over the workers, for the most active users, both surfaces in turn, and
records each one's latency and whether it was degraded. With ``publish`` it then runs a retrain
(which warms the new indices before its alias swap) while the server runs and measures the feeds from
the swap on the same way, until the server serves the new run and ``feeds`` more after that.

With ``load_rate`` the whole measurement runs twice: on the machine as found, then on a fresh server
under the serving benchmark's open-loop load generator (:mod:`hybridrec.bench.serving`, its own
process) offering ``load_rate`` feeds/s of other users from the moment the server first answers until
the last feed measured after the start, and again from the swap on (the retrain itself runs without
it), so the measured feeds compete with traffic as they would on a server in a live pool.

Results go to first_feed.json in the results folder (hybridrec.benchmarks.results_dir), each variant
with the load averages sampled at each step: the machine has two cores and is shared, so a figure
means little without them.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from hybridrec.benchmarks import code_state, world_identity, write_result
from hybridrec.config import Settings
from hybridrec.contract import EVENTS
from hybridrec.lake import Lake

SURFACES = ("place", "clip")
_API_KEY = secrets.token_urlsafe(24)  # made up for the server under test: reads need a key by default
START_TIMEOUT_S = 600.0
LOAD_RATE = 50.0  # feeds/s of the added load: the serving benchmark's lowest rate, served without shedding idle
LOAD_USERS = 2000  # the load's users: the most active ones, beyond the measured feeds' own
LOAD_MAX_S = 3600.0  # the generator's schedule; it is stopped when the measurement ends


def _users(settings: Settings, count: int = 50) -> list[str]:
    """The most active users of both surfaces: the ones whose feeds use every candidate source."""
    events = Lake(settings).scan(EVENTS, columns=("user_id", "surface")).to_pandas()
    per_surface = events.groupby(["user_id", "surface"]).size().unstack(fill_value=0)
    return per_surface.min(axis=1).sort_values(ascending=False).index[:count].astype(str).tolist()


def _get(port: int, path: str, params: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    """One GET on a new connection (the kernel may hand it to any worker). The standard library's
    client: httpx builds an SSL context per client, tens of ms that would be counted as the server's."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", f"{path}?{urlencode(params)}" if params else path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _until(port: int, path: str, server: subprocess.Popen, start: float, log_path: Path) -> float:
    """Seconds from ``start`` until ``path`` answers 200."""
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited; its log:\n{log_path.read_text()[-3000:]}")
        try:
            if _get(port, path)[0] == 200:
                return round(time.monotonic() - start, 2)
        except OSError:
            pass
        if time.monotonic() - start > START_TIMEOUT_S:
            raise RuntimeError(f"{path} did not answer 200 within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.1)


def _feed(port: int, user: str, surface: str) -> dict:
    sent = time.perf_counter()
    status, raw = _get(port, f"/v1/feed/{user}", {"surface": surface, "limit": 20}, {"X-API-Key": _API_KEY})
    elapsed_ms = (time.perf_counter() - sent) * 1000
    body = json.loads(raw) if status == 200 else {}
    return {"ms": round(elapsed_ms, 1), "server_ms": round(sum((body.get("timings_ms") or {}).values()), 1),
            "status": status, "degraded": body.get("degraded", True), "reason": body.get("degraded_reason"),
            "run_id": body.get("run_id")}


def _summary(feeds: list[dict]) -> dict:
    latency, server = [f["ms"] for f in feeds], [f["server_ms"] for f in feeds]
    return {"feeds": len(feeds), "degraded": sum(f["degraded"] for f in feeds),
            "degraded_reasons": sorted({f["reason"] for f in feeds if f["reason"]}),
            "first_ms": latency[0] if latency else None,
            "p50_ms": round(float(np.percentile(latency, 50)), 1) if latency else None,
            "max_ms": max(latency) if latency else None, "latencies_ms": latency,
            "server_stages_ms": server}


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _after_publish(settings: Settings, port: int, users: list[str], feeds: int, load: dict, added: "_Load") -> dict:
    from hybridrec.batch.retrain import retrain_job

    added.stop()  # the retrain runs on the machine as found; the added load is back for the feeds after the swap
    started = time.monotonic()
    new_run = retrain_job(settings)["run"].run_id
    retrain_s = round(time.monotonic() - started, 1)
    load["after_retrain"] = _load_average()
    added.start()
    swapped = time.monotonic()
    measured: list[dict] = []
    while sum(f["run_id"] == new_run for f in measured) < feeds and time.monotonic() - swapped < 120:
        measured.append(_feed(port, users[len(measured) % len(users)], SURFACES[len(measured) % 2]))
    load["after_feeds_after_publish"] = _load_average()
    first_new = next((n for n, f in enumerate(measured) if f["run_id"] == new_run), None)
    return {"run_id": new_run, "retrain_s": retrain_s,
            "feeds_until_new_run": first_new, "since_swap": _summary(measured),
            "new_run": _summary([f for f in measured if f["run_id"] == new_run])}


class _Load:
    """The serving benchmark's open-loop generator against the server under test, running while started
    (nothing at all when ``rate`` is None)."""

    def __init__(self, port: int, rate: float | None, users_file: Path, env: dict, log_path: Path):
        self.port, self.rate, self.users_file, self.env, self.log_path = port, rate, users_file, env, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        from hybridrec.bench.serving import KEY_ENV

        if self.rate is None:
            return
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hybridrec.bench.serving", "127.0.0.1", str(self.port), str(self.rate),
                 str(LOAD_MAX_S), str(self.users_file)], env={**self.env, KEY_ENV: _API_KEY},
                stdout=subprocess.DEVNULL, stderr=out)

    def stop(self) -> None:
        """Stop the generator; one that exited by itself failed, and its measurement with it."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is not None:
            raise RuntimeError(f"the load generator exited early: {self.log_path.read_text()[-2000:]}")
        process.terminate()
        process.wait(timeout=60)


def _measure(settings: Settings, env: dict, port: int, users: list[str], feeds: int, publish: bool,
             load_rate: float | None) -> dict:
    """One fresh server: time to answer and to ready, the first feeds, and (``publish``) those after a
    publish; with ``load_rate``, that much generated traffic from its first answer to the last feed
    measured after the start, and again from the swap (not during the retrain)."""
    load = {"at_start": _load_average()}
    with tempfile.TemporaryDirectory(prefix="bench-first-feed-") as tmp:
        log_path, users_file = Path(tmp) / "server.log", Path(tmp) / "load-users.json"
        users_file.write_text(json.dumps(_users(settings, LOAD_USERS)))
        added = _Load(port, load_rate, users_file, env, Path(tmp) / "load.log")
        with log_path.open("wb") as server_log:
            start = time.monotonic()
            server = subprocess.Popen([sys.executable, "-m", "hybridrec.cli", "serve"], env=env,
                                      stdout=server_log, stderr=subprocess.STDOUT)
        try:
            first_answer_s = _until(port, "/healthz", server, start, log_path)
            added.start()
            ready_s = _until(port, "/readyz", server, start, log_path)
            load["at_ready"] = _load_average()
            first = [_feed(port, users[n % len(users)], SURFACES[n % 2]) for n in range(feeds)]
            load["after_first_feeds"] = _load_average()
            after_publish = _after_publish(settings, port, users, feeds, load, added) if publish else None
            added.stop()
        finally:
            if added.process is not None:
                added.process.terminate()
                added.process.wait(timeout=60)
            server.terminate()
            server.wait(timeout=60)
        warm_lines = [line for line in log_path.read_text(errors="replace").splitlines() if "warm in" in line]
    return {"added_load": ({"feeds_per_s": load_rate, "generator": "hybridrec.bench.serving, open loop, "
                                                                    f"{LOAD_USERS} most active users, both surfaces, "
                                                                    "from the server's first answer to the last feed "
                                                                    "measured after start, and from the swap to the "
                                                                    "last measured after it (not during the retrain)"}
                           if load_rate is not None else None),
            "load_average": load, "seconds_to_first_answer": first_answer_s, "seconds_to_ready": ready_s,
            "after_start": _summary(first), "after_publish": after_publish, "worker_warm_up_log": warm_lines}


def run_benchmark(settings: Settings, feeds: int = 20, publish: bool = False, load_rate: float | None = None) -> dict:
    """Measure on the machine as found, and with ``load_rate`` also under added serving load."""
    cfg = settings.serving
    port = cfg.port + 19  # beside a developer's own server and the serving benchmark's
    env = {**os.environ, "HYBRIDREC__SERVING__HOST": "127.0.0.1", "HYBRIDREC__SERVING__PORT": str(port),
           "HYBRIDREC__LOG_LEVEL": "INFO", "HYBRIDREC__SERVING__MODEL_CHECK_INTERVAL_S": "1",
           "HYBRIDREC__SERVING__API_KEYS": json.dumps([_API_KEY])}
    code_at_start, load_at_start = code_state(), os.getloadavg()
    users = _users(settings)
    variants = {"machine_as_found": _measure(settings, env, port, users, feeds, publish, None)}
    if load_rate is not None:
        variants["under_load"] = _measure(settings, env, port, users, feeds, publish, load_rate)
    metrics = {"server": f"uvicorn, {cfg.processes} workers, warmup_timeout_s {cfg.warmup_timeout_s:g}",
               **variants,
               "method": "each feed on a new connection (http.client), sent one at a time right after /readyz "
                         "said ready; latency measured by the client, server_stages_ms = sum of the response's "
                         "timings_ms; load_average: 1/5/15-min averages sampled at each step"}
    command = ("hybridrec bench first-feed" + (" --publish" if publish else "")
               + (f" --under-load --load-rate {load_rate:g}" if load_rate is not None else ""))
    path = write_result("first_feed", "first feeds after start and publish", world_identity(settings.synthetic)
                        + ", published indices", command, metrics, settings, load_at_start, code_at_start)
    print(f"wrote {path}")
    return metrics
