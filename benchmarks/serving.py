"""Feed latency under load: a real uvicorn server, open-loop load from a separate process.

``hybridrec bench serving`` runs :func:`run_benchmark`: it starts the server as ``hybridrec serve``
does (``serving.workers`` processes), warms it until every worker's item caches are loaded, then offers each rate for
``seconds``. The load generator is this file run as a script in its own process: one asyncio loop
with a minimal keep-alive HTTP/1.1 client fires each request at its scheduled time (open loop, so a slow server cannot
slow the offered load and hide its latency) for random users of the published indices, both
surfaces. Latency is measured from the scheduled time, so a generator that fell behind would add
its lag to the figures rather than hide it; its lag and CPU time per request are reported to show
it did not limit the rate.

Per rate: offered and achieved rate, the share shed by admission (``degraded_reason: overloaded``),
other degraded answers and errors, p50/p95/p99 of every answer and of the personalised ones, and
per-stage p50/p99 from the responses' ``timings_ms`` (``queue``: waiting for a pipeline slot).
Results go to serving.json in the results folder (hybridrec.benchmarks.results_dir) with the load average at each step: the machine has
two cores and is shared, so a figure means little without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

from hybridrec.synthetic.entities import user_ids
from hybridrec.benchmarks import code_state, world_identity, write_result
from hybridrec.config import Settings

SURFACES = ("place", "clip")
STAGES = ("queue", "load", "candidates", "rank", "rules", "respond")
REQUEST_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 1000  # open loop: at 200 req/s and 5 s answers, 1000 requests are outstanding
WARM_TIMEOUT_S = 180.0  # the clip item cache of a 20k-item world takes ~25 s to load on an idle machine
WARM_LOG_LINE = "item cache warmed"  # logged by hybridrec.serving.candidates.ItemCache once per index and worker
PAUSE_BETWEEN_RATES_S = 3.0
KEY_ENV = "HYBRIDREC_BENCH_API_KEY"  # the key made up for the server under test, handed to the generator
TARGET_RATE, TARGET_P99_MS = 100, 50.0  # issue #7


# ---------------------------------------------------------------- the load generator (its own process)

class _Connections:
    """Keep-alive HTTP/1.1 connections to the server, one request at a time each, at most ``limit``.

    The generator's own client because it must stay cheap: httpx took ~2 ms of CPU per request, and
    its pool slowed quadratically with thousands of requests waiting on a saturated server (the
    generator then ran at 100 % CPU and became the bottleneck). Uvicorn always sends Content-Length."""

    def __init__(self, host: str, port: int, limit: int, api_key: str):
        self.host, self.port, self.api_key = host, port, api_key
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(limit)

    async def get(self, target: str) -> tuple[int, bytes]:
        async with self.slots:
            while self.idle:
                try:
                    return await self._exchange(*self.idle.pop(), target)
                except (ConnectionError, asyncio.IncompleteReadError):
                    continue  # closed by the server while idle: take another
            return await self._exchange(*await asyncio.open_connection(self.host, self.port), target)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        target: str) -> tuple[int, bytes]:
        try:
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\nX-API-Key: {self.api_key}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if line)
            body = await reader.readexactly(int(headers[b"content-length"]))
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer))
        return int(lines[0].split(b" ", 2)[1]), body

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _fire(host: str, port: int, rate: float, seconds: float, users: list[str], seed: int) -> dict:
    rng = random.Random(seed)
    plan = [(rng.choice(users), rng.choice(SURFACES)) for _ in range(int(rate * seconds))]
    results: list[dict] = []
    client = _Connections(host, port, MAX_CONNECTIONS, os.environ[KEY_ENV])

    async def one(due: float, user: str, surface: str) -> None:
        sent = time.perf_counter()
        try:
            status, raw = await asyncio.wait_for(client.get(f"/v1/feed/{user}?surface={surface}&limit=20"),
                                                 REQUEST_TIMEOUT_S)
            body = orjson.loads(raw)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, KeyError,
                ValueError):
            body, status = {}, 0
        done = time.perf_counter()
        results.append({"ms": (done - due) * 1000, "lag_ms": (sent - due) * 1000, "done_s": done - start,
                        "status": status, "degraded": bool(body.get("degraded")),
                        "reason": body.get("degraded_reason"), "stages": body.get("timings_ms") or {}})

    cpu_before, start = _cpu_s(), time.perf_counter()
    tasks = []
    for n, (user, surface) in enumerate(plan):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, user, surface)))
    await asyncio.gather(*tasks)
    client.close()
    return {"results": results, "schedule_s": len(plan) / rate, "cpu_s": _cpu_s() - cpu_before}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _generate_load(host: str, port: int, rate: float, seconds: float, users_file: str) -> None:
    users = json.loads(Path(users_file).read_text())
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(_fire(host, port, rate, seconds, users, seed=int(rate)))))


# ---------------------------------------------------------------- the benchmark (``hybridrec bench serving``)

def _percentiles(values: list[float], qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float | None]:
    return {f"p{q}_ms": round(float(np.percentile(values, q)), 1) if values else None for q in qs}


def _summary(payload: dict) -> dict:
    results, schedule_s = payload["results"], payload["schedule_s"]
    answered = [r for r in results if r["status"] == 200]
    personalised = [r for r in answered if not r["degraded"]]
    shed = [r for r in answered if r["reason"] == "overloaded"]
    window_s = max([schedule_s, *(r["done_s"] for r in results)])
    stages = {}
    for name in STAGES:
        values = [r["stages"][name] for r in personalised if name in r["stages"]]
        if values:
            stages[name] = _percentiles(values, (50, 99))
    return {
        "requests": len(results), "offered_rps": round(len(results) / schedule_s, 1),
        "achieved_rps": round(len(answered) / window_s, 1), "personalised_rps": round(len(personalised) / window_s, 1),
        "shed": len(shed), "shed_share": round(len(shed) / max(1, len(results)), 3),
        "degraded_other": sum(r["degraded"] for r in answered) - len(shed),
        "errors": len(results) - len(answered),
        **_percentiles([r["ms"] for r in results]),
        "personalised": _percentiles([r["ms"] for r in personalised]),
        "shed_latency": _percentiles([r["ms"] for r in shed], (50, 99)),
        "stages": stages,
        "generator": {"lag_p99_ms": _percentiles([r["lag_ms"] for r in results], (99,))["p99_ms"],
                      "cpu_ms_per_request": round(payload["cpu_s"] * 1000 / max(1, len(results)), 2)},
    }


def _load_average() -> float:
    return round(os.getloadavg()[0], 2)


def _warm(url: str, users: list[str], log_path: Path, indices: int, api_key: str) -> bool:
    """Feeds, one at a time, until every worker has logged a warm item cache for each surface's
    index (the background load that would otherwise compete with the measured requests). Each on
    a new connection: the kernel hands connections, not requests, to the workers."""
    deadline = time.monotonic() + WARM_TIMEOUT_S
    n = 0
    while time.monotonic() < deadline:
        if log_path.read_text(errors="replace").count(WARM_LOG_LINE) >= indices:
            return True
        httpx.get(f"{url}/v1/feed/{users[n % len(users)]}", params={"surface": SURFACES[n % 2]},
                  headers={"X-API-Key": api_key}, timeout=30)
        n += 1
        time.sleep(0.02)
    return False


def _wait_ready(url: str, server: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server at {url} did not come up in {timeout_s} s")


def run_benchmark(settings: Settings, rates: list[float], seconds: float) -> dict:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per warm-up request otherwise
    cfg = settings.serving
    port = cfg.port + 17  # beside a developer's own server
    url = f"http://127.0.0.1:{port}"
    api_key = secrets.token_urlsafe(24)  # the server under test is private by default, like any served one
    env = {**os.environ, "HYBRIDREC__SERVING__HOST": "127.0.0.1", "HYBRIDREC__SERVING__PORT": str(port),
           "HYBRIDREC__LOG_LEVEL": "INFO", "HYBRIDREC__SERVING__API_KEYS": json.dumps([api_key]), KEY_ENV: api_key}
    users = user_ids(settings.synthetic).to_pylist()[::max(1, settings.synthetic.n_users // 2000)]
    code_at_start, load_at_start = code_state(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        log_path, users_file = Path(tmp) / "server.log", Path(tmp) / "users.json"
        users_file.write_text(json.dumps(users))
        with log_path.open("wb") as server_log:
            server = subprocess.Popen([sys.executable, "-m", "hybridrec.cli", "serve"], env=env,
                                      stdout=server_log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(url, server, timeout_s=cfg.warmup_timeout_s + 60)  # workers warm before they answer
            warm = _warm(url, users, log_path, indices=len(SURFACES) * cfg.processes, api_key=api_key)
            table = {}
            for rate in rates:
                time.sleep(PAUSE_BETWEEN_RATES_S)
                load_before = _load_average()
                out = subprocess.run([sys.executable, "-m", "hybridrec.bench.serving", "127.0.0.1", str(port), str(rate),
                                      str(seconds), str(users_file)],
                                     capture_output=True, check=True, env=env)
                row = {**_summary(orjson.loads(out.stdout)), "load_average_before": load_before,
                       "load_average_after": _load_average()}
                table[str(int(rate))] = row
                print(f"{rate:>5.0f} req/s: {json.dumps({k: v for k, v in row.items() if k != 'stages'})}", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    reference = table.get("100") or next(iter(table.values()))
    metrics = {"p50_ms": reference["p50_ms"], "p95_ms": reference["p95_ms"], "p99_ms": reference["p99_ms"],
               "shed_share": reference["shed_share"], "by_rate": table, "seconds_per_rate": seconds,
               "server": f"uvicorn, {cfg.processes} worker{'s' if cfg.processes > 1 else ''}, "
                         f"max_concurrent_feeds {cfg.max_concurrent_feeds}, max_queue_ms {cfg.max_queue_ms:g}",
               "load_generator": "separate process, asyncio with keep-alive HTTP/1.1 connections, open loop; "
                                 "latency from the scheduled send time",
               "item_caches_warm": warm}
    command = f"hybridrec bench serving --seconds {seconds:g} --rates {','.join(f'{r:g}' for r in rates)}"
    path = write_result("serving", "feed API latency under load", world_identity(settings.synthetic) +
                        ", published indices", command, metrics, settings, load_at_start, code_at_start)
    plot = plot_latency(table, path.with_suffix(".png"))
    return {**metrics, "result_file": str(path), "plot": str(plot)}


def plot_latency(by_rate: dict[str, dict], path: Path) -> Path:
    """Latency percentiles and shed share against the offered rate, beside each stage's p99 per rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = sorted(by_rate, key=float)
    offered = [float(r) for r in rates]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for q, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        left.plot(offered, [by_rate[r][f"{q}_ms"] for r in rates], style, label=q)
    left.plot([TARGET_RATE], [TARGET_P99_MS], "r*", markersize=12, label=f"target: p99 < {TARGET_P99_MS:g} ms")
    left.set(xlabel="offered requests/s", ylabel="latency, ms (all answers)", title="feed latency under load")
    shed = left.twinx()
    shed.bar(offered, [100 * by_rate[r]["shed_share"] for r in rates], width=12, alpha=0.2, color="grey")
    shed.set_ylabel("shed to the fallback list, %")
    left.legend(loc="upper left")
    width = 0.8 / len(rates)
    for n, rate in enumerate(rates):
        stages = by_rate[rate]["stages"]
        p99 = [stages.get(s, {}).get("p99_ms") or 0 for s in STAGES]  # no stage where nothing was personalised
        right.bar([k + n * width for k in range(len(STAGES))], p99, width, label=f"{rate} req/s")
    right.set_xticks([k + width * (len(rates) - 1) / 2 for k in range(len(STAGES))], STAGES)
    right.set(ylabel="p99, ms", title="where the time goes: stage p99")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    _generate_load(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
