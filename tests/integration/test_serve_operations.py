"""`hybridrec serve` as an operator runs it: three real uvicorn workers over real OpenSearch and Kafka.

Warm before ready (the first feeds after readiness, and after a new publish, are personalised), one
``/metrics`` for the whole server (multiprocess mode: totals over every worker), and degraded place
feeds that answer from the request's region with names when OpenSearch is unreachable.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from hybridrec.batch.retrain import retrain_job
from hybridrec.contract import EVENTS, PLACES
from hybridrec.fallback import TITLE_CHARS, fallback_path
from hybridrec.lake import Lake
from hybridrec.serving.app import create_app

pytestmark = pytest.mark.integration

WORKERS = 3
API_KEY = "ops-integration-key"  # reads need a key under the default config
KEY = {"X-API-Key": API_KEY}
FEED_ROUTE = "/v1/feed/{user_id}"
SEOMYEON = (35.1578, 129.0600)  # busan-seomyeon's centre in the synthetic world


@pytest.fixture(scope="module")
def published(small_world):
    return small_world, retrain_job(small_world)["run"].run_id


@pytest.fixture(scope="module")
def users(published) -> list[str]:
    """Users with events on both surfaces, most active first (personalised feeds expected for them)."""
    events = Lake(published[0]).scan(EVENTS, columns=("user_id", "surface")).to_pandas()
    per_surface = events.groupby(["user_id", "surface"]).size().unstack(fill_value=0)
    return per_surface.min(axis=1).sort_values(ascending=False).index[:40].astype(str).tolist()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fresh_get(url: str, params: dict | None = None) -> httpx.Response:
    """One request on a connection of its own, so the kernel may hand it to any worker."""
    return httpx.get(url, params=params, timeout=30, headers={**KEY, "Connection": "close"})


def _feeds(base: str, users: list[str], count: int, parallel: int = 1) -> list[dict]:
    """``count`` feeds, ``parallel`` at a time (one at a time: as users arrive, nothing queues)."""
    targets = [(users[n % len(users)], ("place", "clip")[n % 2]) for n in range(count)]
    with ThreadPoolExecutor(parallel) as pool:
        responses = list(pool.map(lambda t: _fresh_get(f"{base}/v1/feed/{t[0]}", {"surface": t[1], "limit": 10}),
                                  targets))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    return [r.json() for r in responses]


@pytest.fixture(scope="module")
def server(small_world_env, published, users, tmp_path_factory) -> Iterator[dict]:
    """`hybridrec serve` with three workers; waits for ``/readyz``, then sends the first 20 feeds at once."""
    port = _free_port()
    env = {**small_world_env, "HYBRIDREC__SERVING__PORT": str(port), "HYBRIDREC__SERVING__WORKERS": str(WORKERS),
           "HYBRIDREC__SERVING__API_KEYS": json.dumps([API_KEY]),
           "HYBRIDREC__SERVING__MODEL_CHECK_INTERVAL_S": "1",
           # the metrics test sends feeds in parallel on a shared 2-core machine: none is shed for that
           "HYBRIDREC__SERVING__MAX_QUEUE_MS": "10000"}
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "hybridrec.cli", "serve"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        start, deadline = time.monotonic(), time.monotonic() + 240
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if _fresh_get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not ready within 240 s:\n" + log_path.read_text()[-3000:]
            time.sleep(0.2)
        ready_s = time.monotonic() - start
        first = _feeds(base, users, 20)
        yield {"url": base, "first": first, "ready_s": ready_s, "log": log_path, "process": process}
    finally:
        process.terminate()
        exit_code = process.wait(timeout=60)
    assert exit_code == 0


def test_the_first_feeds_after_readiness_are_personalised(server, published):
    first = server["first"]
    assert [b["degraded"] for b in first] == [False] * 20, [b.get("degraded_reason") for b in first]
    assert {b["run_id"] for b in first} == {published[1]} and all(b["items"] for b in first)


def _samples(text: str, name: str) -> dict[str, float]:
    """``labels → value`` of every sample of the metric ``name`` in a Prometheus text exposition."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{.*\}})? (\S+)$", re.M)  # label values may hold braces
    return {labels or "": float(value) for labels, value in pattern.findall(text)}


def _scrape(url: str) -> str:
    response = _fresh_get(f"{url}/metrics")
    assert response.status_code == 200
    return response.text


def test_metrics_are_the_whole_servers_with_route_templates(server, users):
    url, n = server["url"], 60
    before = _scrape(url)
    _feeds(url, users, n, parallel=2 * WORKERS)
    missing = _fresh_get(f"{url}/v1/feed/nobody-{time.time_ns()}", {"surface": "moon"})
    after = _scrape(url)

    def feeds_ok(text: str) -> float:
        return _samples(text, "hybridrec_responses_total").get(f'{{route="{FEED_ROUTE}",status="200"}}', 0.0)

    def latency_count(text: str) -> float:
        return _samples(text, "hybridrec_request_seconds_count").get(f'{{method="GET",route="{FEED_ROUTE}"}}', 0.0)

    assert feeds_ok(after) - feeds_ok(before) == n
    assert latency_count(after) - latency_count(before) == n + 1  # the 422 is timed under the template too
    per_worker = _samples(after, "hybridrec_worker_responses")
    assert len(per_worker) > 1, f"one worker answered everything: {per_worker}"  # the pid label, one per worker
    assert len(per_worker) <= WORKERS and all(re.fullmatch(r'\{pid="\d+"\}', k) for k in per_worker)
    assert missing.status_code == 422
    assert "nobody-" not in after  # labels are route templates, never a raw path with a user id
    assert f'hybridrec_responses_total{{route="{FEED_ROUTE}",status="422"}}' in after


def test_degraded_place_feed_in_busan_answers_with_busan_places_by_name(published):
    settings, run_id = published
    dead = settings.model_copy(update={
        "opensearch": settings.opensearch.model_copy(update={"port": _free_port()}),  # nothing listens there
        "serving": settings.serving.model_copy(update={"search_timeout_s": 0.5, "api_keys": [API_KEY]})})
    places = Lake(settings).scan(PLACES, columns=("item_id", "name", "region")).to_pandas().set_index("item_id")
    assert json.loads(fallback_path(settings).read_text())["run_id"] == run_id
    with TestClient(create_app(dead)) as client:
        body = client.get("/v1/feed/someone", params={"surface": "place", "limit": 10, "lat": SEOMYEON[0],
                                                      "lon": SEOMYEON[1]}, headers=KEY).json()
        anywhere = client.get("/v1/feed/someone", params={"surface": "place", "limit": 10}, headers=KEY).json()
    assert body["degraded"] is True and body["run_id"] == run_id and len(body["items"]) == 10
    for item in body["items"]:
        assert places.at[item["item_id"], "region"].startswith("busan"), item
        assert item["title"] == places.at[item["item_id"], "name"][:TITLE_CHARS] and item["title"]
    assert {places.at[i["item_id"], "region"] for i in anywhere["items"]} != {"busan-seomyeon"}


def test_the_first_feeds_after_a_new_publish_are_personalised(server, published, users):
    """A retrain publishes while the server runs: each worker warms the new run in the background while the
    old run keeps serving, then switches. Every feed from the swap until all workers serve the new run (20
    feeds in a row from it) is personalised, and the server gets there within a minute."""
    settings, first_run = published
    new_run = retrain_job(settings)["run"].run_id
    url, bodies = server["url"], []
    deadline = time.monotonic() + 60
    while not (len(bodies) >= 20 and {b["run_id"] for b in bodies[-20:]} == {new_run}):
        assert time.monotonic() < deadline, (
            f"the server did not serve only the new run within 60 s: last runs {[b['run_id'] for b in bodies[-20:]]}")
        bodies += _feeds(url, users, 6)
    assert [b["degraded"] for b in bodies] == [False] * len(bodies), [b.get("degraded_reason") for b in bodies]
    assert first_run != new_run and {b["run_id"] for b in bodies} <= {first_run, new_run}
