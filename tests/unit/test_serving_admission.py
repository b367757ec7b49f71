"""Load shedding: a feed that cannot start within serving.max_queue_ms answers degraded at once."""

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from hybridrec.config import load_settings
from hybridrec.serving.admission import Admission
from hybridrec.serving.app import create_app


async def _enter(admission: Admission, arrived: float) -> bool:
    async with admission.slot(arrived) as admitted:
        return admitted


def test_a_free_slot_admits_a_fresh_request_but_not_one_past_its_deadline():
    now = [100.0]
    admission = Admission(slots=1, max_queue_ms=100, clock=lambda: now[0])
    assert asyncio.run(_enter(admission, arrived=99.95))  # waited 50 ms
    assert not asyncio.run(_enter(admission, arrived=99.85))  # waited 150 ms before its turn: shed


def test_a_request_waits_for_a_slot_only_until_its_deadline():
    async def scenario() -> tuple[bool, float, bool]:
        admission = Admission(slots=1, max_queue_ms=50)
        release = asyncio.Event()

        async def hold() -> None:
            async with admission.slot(admission.clock()):
                await release.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        start = time.perf_counter()
        shed = await _enter(admission, admission.clock())
        waited = time.perf_counter() - start
        waiter = asyncio.create_task(_enter(admission, admission.clock()))
        await asyncio.sleep(0.01)
        release.set()  # freed before this one's deadline: it runs
        await holder
        return shed, waited, await waiter

    admitted_late, waited, admitted_in_time = asyncio.run(scenario())
    assert admitted_late is False and 0.04 <= waited < 0.5
    assert admitted_in_time is True


def test_a_queue_that_cannot_drain_before_the_deadline_sheds_on_arrival():
    """Feeds hold a slot 80 ms: behind one running feed a request can make a 100 ms deadline (expected
    wait 40 ms), behind a running feed and a waiter it cannot (120 ms) and is shed without waiting."""
    now = [0.0]
    admission = Admission(slots=1, max_queue_ms=100, clock=lambda: now[0])

    async def scenario() -> tuple[float, float, bool, bool]:
        async with admission.slot(now[0]):
            now[0] += 0.08
        release = asyncio.Event()

        async def hold() -> None:
            async with admission.slot(now[0]):
                await release.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        behind_one = admission.expected_wait_s()
        waiter = asyncio.create_task(_enter(admission, now[0]))
        for _ in range(3):  # the waiter's wait_for starts its own task
            await asyncio.sleep(0)
        behind_two = admission.expected_wait_s()
        shed_at_once = not await asyncio.wait_for(_enter(admission, now[0]), timeout=0.05)
        release.set()
        await holder
        return behind_one, behind_two, shed_at_once, await waiter

    behind_one, behind_two, shed_at_once, waiter_admitted = asyncio.run(scenario())
    assert behind_one == pytest.approx(0.04) and behind_two == pytest.approx(0.12)
    assert shed_at_once and waiter_admitted


def test_slots_are_returned_when_the_pipeline_fails():
    async def scenario() -> bool:
        admission = Admission(slots=1, max_queue_ms=50)
        with pytest.raises(RuntimeError):
            async with admission.slot(admission.clock()):
                raise RuntimeError("pipeline failed")
        return await _enter(admission, admission.clock())

    assert asyncio.run(scenario())


@pytest.fixture
def overloaded_app(tmp_path):
    """The app with one pipeline slot, a 50 ms queue deadline and a slow fake pipeline (0.4 s per feed)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "popular-fallback.json").write_text(json.dumps(
        {"run_id": "run-x", "place": {"all": ["p1", "p2"]}, "clip": {"all": ["c1", "c2", "c3"]}}))
    settings = load_settings(environ={"HYBRIDREC__HOME": str(tmp_path), "HYBRIDREC__OPENSEARCH__PORT": "1",
                                      "HYBRIDREC__KAFKA__PORT": "2", "HYBRIDREC__SERVING__MAX_CONCURRENT_FEEDS": "1",
                                      "HYBRIDREC__SERVING__MAX_QUEUE_MS": "50",
                                      "HYBRIDREC__SERVING__API_KEYS": "[k1]"})
    app = create_app(settings, warm_item_cache=False)
    started = threading.Event()

    def slow_feed(query, arrived=None):
        started.set()
        time.sleep(0.4)
        return {"user_id": query.user_id, "degraded": False, "items": [{"item_id": "personal"}]}

    app.state.pipeline.feed = slow_feed
    with TestClient(app, headers={"X-API-Key": "k1"}) as client:
        yield client, started


def test_requests_beyond_the_slots_are_shed_to_the_fallback_list_and_counted(overloaded_app):
    client, started = overloaded_app
    get = lambda user: client.get(f"/v1/feed/{user}", params={"surface": "clip", "limit": 2})  # noqa: E731
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(get, "u1")
        assert started.wait(5)
        begun = time.perf_counter()
        others = [pool.submit(get, f"u{n}") for n in range(2, 5)]
        shed = [f.result() for f in others]
        shed_within_s = time.perf_counter() - begun
        personalised = first.result()
    assert personalised.status_code == 200 and personalised.json()["degraded"] is False
    for response in shed:
        body = response.json()
        assert response.status_code == 200 and body["degraded"] is True and body["degraded_reason"] == "overloaded"
        assert [i["item_id"] for i in body["items"]] == ["c1", "c2"] and body["run_id"] == "run-x"
        assert all(i["score"] is None and i["sources"] == ["fallback"] for i in body["items"])
    assert shed_within_s < 0.35  # answered at their deadline, not after the slow feed ahead of them
    metrics = client.get("/metrics").text
    assert 'hybridrec_feed_degraded_responses_total{reason="overloaded",surface="clip"} 3.0' in metrics
