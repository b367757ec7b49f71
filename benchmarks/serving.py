"""Feed latency under load: a real uvicorn server, open-loop load from a separate process.

The load generator (a subprocess) fires requests at fixed rates on a schedule (open loop, so a slow
server cannot slow the offered load and hide its latency), for random users of the published
indices, both surfaces; it measures client-side latency. Per-stage timings come from the
responses' ``timings_ms``. Results: p50/p95/p99 per rate, written to benchmarks/results/serving.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from hybridrec.benchmarks import write_result
from hybridrec.config import PROJECT_ROOT, Settings

LOAD_SCRIPT = r'''
import json, random, sys, threading, time
import httpx
url, rate, seconds, users = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
results, lock = [], threading.Lock()
client = httpx.Client(base_url=url, timeout=10.0, limits=httpx.Limits(max_connections=256))
def one(user, surface):
    start = time.perf_counter()
    try:
        r = client.get(f"/v1/feed/{user}", params={"surface": surface, "limit": 20})
        body = r.json(); status = r.status_code
    except Exception as err:
        body, status = {}, 0
    ms = (time.perf_counter() - start) * 1000
    with lock:
        results.append({"ms": ms, "status": status, "degraded": body.get("degraded"), "stages": body.get("timings_ms", {})})
rng = random.Random(7); threads = []; t0 = time.perf_counter(); n = int(rate * seconds)
for i in range(n):
    delay = t0 + i / rate - time.perf_counter()
    if delay > 0: time.sleep(delay)
    th = threading.Thread(target=one, args=(rng.choice(users), rng.choice(["place", "clip"]))); th.start(); threads.append(th)
for th in threads: th.join()
print(json.dumps({"results": results, "offered_s": time.perf_counter() - t0}))
'''


def _wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server at {url} did not come up in {timeout_s} s")


def _summary(results: list[dict], seconds: float) -> dict:
    ms = np.array([r["ms"] for r in results])
    ok = [r for r in results if r["status"] == 200]
    stages = {}
    for name in ("load", "candidates", "rank", "rules", "respond"):
        values = [r["stages"][name] for r in ok if name in r["stages"]]
        if values:
            stages[name] = {"p50_ms": round(float(np.percentile(values, 50)), 1),
                            "p99_ms": round(float(np.percentile(values, 99)), 1)}
    return {"requests": len(results), "achieved_rps": round(len(results) / seconds, 1),
            "errors": sum(r["status"] != 200 for r in results), "degraded": sum(bool(r["degraded"]) for r in ok),
            **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)}, "stages": stages}


def run_benchmark(settings: Settings, rates: list[float], seconds: float) -> dict:
    port = settings.serving.port + 17  # beside a developer's own server
    url = f"http://127.0.0.1:{port}"
    workers = settings.serving.workers
    env = {**os.environ, "HYBRIDREC__SERVING__PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "hybridrec.serving.asgi:app", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", str(workers), "--log-level", "warning",
                               "--no-access-log"], env=env, cwd=PROJECT_ROOT)
    try:
        _wait_ready(url)
        users = [f"u{i:05d}" for i in range(0, settings.synthetic.n_users, max(1, settings.synthetic.n_users // 2000))]
        for surface in ("place", "clip"):  # warm-up: every worker's models, shared lists and item cache loaded
            for user in users[:100]:
                httpx.get(f"{url}/v1/feed/{user}", params={"surface": surface}, timeout=30)
        load_before = os.getloadavg()[0]
        table = {}
        for rate in rates:
            out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, url, str(rate), str(seconds), json.dumps(users)],
                                 capture_output=True, text=True, check=True)
            payload = json.loads(out.stdout)
            table[str(int(rate))] = _summary(payload["results"], payload["offered_s"])
            print(f"{rate:>5.0f} req/s: {json.dumps({k: v for k, v in table[str(int(rate))].items() if k != 'stages'})}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    reference = table.get("100") or next(iter(table.values()))
    metrics = {"p50_ms": reference["p50_ms"], "p95_ms": reference["p95_ms"], "p99_ms": reference["p99_ms"],
               "by_rate": table, "seconds_per_rate": seconds,
               "server": f"uvicorn, {workers} worker{'s' if workers > 1 else ''}",
               "load_average_at_start": round(load_before, 2),
               "contended": load_before > (os.cpu_count() or 1),
               "note": "machine shared with other engineers' jobs while measured" if load_before > (os.cpu_count() or 1) else ""}
    path = write_result("serving", "feed API latency under load", "synthetic world, published indices",
                        "hybridrec bench serving", metrics)
    return {**metrics, "result_file": str(Path(path).relative_to(PROJECT_ROOT))}
