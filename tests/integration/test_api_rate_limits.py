"""The rate limit of a real multi-worker ``hybridrec serve`` holds for the whole server, not per worker.

No Kafka or OpenSearch needed: the access check runs before a route does any work, and a write
with an invalid body answers 422 once it passed (429 when it did not)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.serving_support import free_port, served

pytestmark = pytest.mark.integration

WORKERS, BURST, RATE = 3, 30, 0.5
REQUESTS = 6 * BURST  # per-worker buckets would grant up to WORKERS × BURST of these


def _worker_pids(server_pid: int) -> list[int]:
    """The uvicorn workers: children started by multiprocessing's spawn (not its resource tracker)."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_workers_share_one_budget_per_key(tmp_path):
    env = {**os.environ, "HYBRIDREC__HOME": str(tmp_path / "home"), "HYBRIDREC__SERVING__PORT": str(free_port()),
           "HYBRIDREC__SERVING__WORKERS": str(WORKERS), "HYBRIDREC__SERVING__API_KEYS": '["rate-key"]',
           "HYBRIDREC__SERVING__RATE_LIMIT_PER_S": str(RATE), "HYBRIDREC__SERVING__RATE_LIMIT_BURST": str(BURST),
           "HYBRIDREC__OPENSEARCH__PORT": "1", "HYBRIDREC__KAFKA__PORT": "2"}
    with served(env, tmp_path / "serve.log") as (url, server):
        assert len(_worker_pids(server.pid)) >= WORKERS, "the server did not start its worker processes"

        def post(_: int) -> int:  # a new connection each: the kernel spreads connections over the workers
            with httpx.Client(base_url=url, timeout=30) as http:
                return http.post("/v1/events", json={}, headers={"X-API-Key": "rate-key"}).status_code

        start = time.monotonic()
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(post, range(REQUESTS)))
        elapsed = time.monotonic() - start
        other_key = httpx.post(f"{url}/v1/events", json={}, headers={"X-API-Key": "nobody"}).status_code
    assert set(statuses) <= {422, 429}, statuses
    accepted = statuses.count(422)
    assert BURST <= accepted <= BURST + RATE * elapsed + 1, (accepted, elapsed)
    assert other_key == 401
