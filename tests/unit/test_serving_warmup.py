"""Warm before ready: slowness is waited out, what waiting cannot cure ends the wait at once."""

from opensearchpy.exceptions import ConnectionError as SearchUnreachable
from opensearchpy.exceptions import ConnectionTimeout

from hybridrec.serving import warmup
from hybridrec.serving.models import ModelUnavailable
from hybridrec.serving.warmup import WarmUp


class FakePipeline:
    def __init__(self, failures: list[Exception]):
        self.failures, self.calls = list(failures), []

    def warm(self, surface: str, recheck: bool = False) -> None:
        self.calls.append((surface, recheck))
        if self.failures:
            raise self.failures.pop(0)


def test_a_slow_search_is_retried_until_every_surface_is_warm(monkeypatch):
    monkeypatch.setattr(warmup, "RETRY_PAUSE_S", 0.01)
    pipeline = FakePipeline([ConnectionTimeout("TIMEOUT", "read timed out", None)] * 2)
    warm = WarmUp(pipeline, timeout_s=5)
    assert not warm.done and warm.run() is True and warm.done
    assert pipeline.calls == [("place", False), ("place", True), ("place", True), ("clip", True)]


def test_an_unreachable_search_or_a_missing_model_ends_the_wait_at_once(monkeypatch):
    monkeypatch.setattr(warmup, "RETRY_PAUSE_S", 0.01)
    for failure in (SearchUnreachable("N/A", "connection refused", None), ModelUnavailable("no ranker file")):
        pipeline = FakePipeline([failure] * 100)
        warm = WarmUp(pipeline, timeout_s=60)
        assert warm.run() is False and not warm.done and len(pipeline.calls) == 1


def test_the_wait_for_a_slow_search_is_bounded(monkeypatch):
    monkeypatch.setattr(warmup, "RETRY_PAUSE_S", 0.01)
    pipeline = FakePipeline([ConnectionTimeout("TIMEOUT", "read timed out", None)] * 10_000)
    assert WarmUp(pipeline, timeout_s=0.2).run() is False and 2 <= len(pipeline.calls) < 100
