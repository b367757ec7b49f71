"""The ranker registry: the published run's model config against the server's, and a new run warmed
before it serves."""

import threading
import time

import pytest

from hybridrec.config import load_settings
from hybridrec.serving.metrics import ServingMetrics
from hybridrec.serving.models import ConfigMatch, RankerRegistry


class PublishedRuns:
    """The store's one call the registry makes: which run each items alias serves, and its config hash."""

    def __init__(self, run_hash: str | None):
        self.run_id, self.run_hash = "retrain-1", run_hash

    def served_run(self, surface: str):
        return f"hybridrec-items-{surface}--{self.run_id}", self.run_id, None, self.run_hash

    def run_users_index(self, surface: str, run_id: str) -> str:
        return f"hybridrec-users-{surface}--{run_id}"


@pytest.fixture
def settings():
    return load_settings(environ={"HYBRIDREC__SERVING__MODEL_CHECK_INTERVAL_S": "0.000001"})


def _registry(settings, store, metrics, monkeypatch):
    registry = RankerRegistry(settings, store, metrics)
    monkeypatch.setattr(registry, "ranker", lambda run_id, surface: f"ranker of {run_id}/{surface}")
    return registry


def _gauge(metrics: ServingMetrics, surface: str) -> float | None:
    return metrics.registry.get_sample_value("hybridrec_model_config_match", {"surface": surface})


def test_a_run_made_under_the_servers_model_config_matches(settings, monkeypatch):
    metrics = ServingMetrics()
    registry = _registry(settings, PublishedRuns(settings.model_config_hash()), metrics, monkeypatch)
    registry.served("clip")
    assert registry.config_match()["clip"] == {"run_id": "retrain-1", "run": settings.model_config_hash(),
                                               "server": settings.model_config_hash(), "match": True}
    assert registry.config_match()["place"] is None  # not loaded yet
    assert _gauge(metrics, "clip") == 1.0


def test_a_run_made_under_another_model_config_still_serves_but_says_so(settings, monkeypatch, caplog):
    other = load_settings(environ={"HYBRIDREC__RETRAIN__LABEL_DAYS": "5"}).model_config_hash()
    metrics = ServingMetrics()
    registry = _registry(settings, PublishedRuns(other), metrics, monkeypatch)
    assert registry.served("place").run_id == "retrain-1"
    report = registry.config_match()["place"]
    assert report["match"] is False and report["run"] == other and report["server"] == settings.model_config_hash()
    assert _gauge(metrics, "place") == 0.0
    assert "model config" in caplog.text


def test_a_run_published_before_runs_carried_the_hash_is_a_mismatch(settings, monkeypatch):
    metrics = ServingMetrics()
    registry = _registry(settings, PublishedRuns(None), metrics, monkeypatch)
    registry.served("clip")
    assert registry.config_match()["clip"]["match"] is False and _gauge(metrics, "clip") == 0.0


def test_a_new_run_under_the_servers_config_clears_the_mismatch(settings, monkeypatch):
    store, metrics = PublishedRuns("0123456789ab"), ServingMetrics()
    registry = _registry(settings, store, metrics, monkeypatch)
    registry.served("clip")
    assert _gauge(metrics, "clip") == 0.0
    store.run_id, store.run_hash = "retrain-2", settings.model_config_hash()
    registry.served("clip")
    assert registry.config_match()["clip"]["run_id"] == "retrain-2" and _gauge(metrics, "clip") == 1.0


def test_config_match_compares_the_hashes():
    assert ConfigMatch("r", "abc", "abc").match and not ConfigMatch("r", "abc", "abd").match
    assert not ConfigMatch("r", None, "abc").match


def test_a_new_run_serves_once_warm_and_the_old_one_serves_meanwhile(settings, monkeypatch):
    store = PublishedRuns(settings.model_config_hash())
    registry = _registry(settings, store, ServingMetrics(), monkeypatch)
    assert registry.served("clip").run_id == "retrain-1"  # the first run switches at once (start-up warms it)
    warming, release, warmed = threading.Event(), threading.Event(), []

    def prepare(surface, model):
        warming.set()
        assert release.wait(5)
        warmed.append((surface, model.run_id, model.items_index, model.users_index))

    registry.prepare = prepare
    store.run_id = "retrain-2"
    old = registry.served("clip")
    assert warming.wait(5)
    assert old.run_id == "retrain-1" and registry.served("clip").run_id == "retrain-1"  # still warming
    assert old.users_index == "hybridrec-users-clip--retrain-1"  # the old run's own user documents
    release.set()
    for _ in range(100):
        if registry.served("clip").run_id == "retrain-2":
            break
        time.sleep(0.05)
    new = registry.served("clip")
    assert new.run_id == "retrain-2" and new.users_index == "hybridrec-users-clip--retrain-2"
    assert warmed == [("clip", "retrain-2", "hybridrec-items-clip--retrain-2", "hybridrec-users-clip--retrain-2")]


def test_a_new_run_whose_warm_up_fails_serves_cold(settings, monkeypatch, caplog):
    store = PublishedRuns(settings.model_config_hash())
    registry = _registry(settings, store, ServingMetrics(), monkeypatch)
    registry.served("place")
    done = threading.Event()

    def prepare(surface, model):
        done.set()
        raise TimeoutError("knn query timed out")

    registry.prepare = prepare
    store.run_id = "retrain-2"
    registry.served("place")
    assert done.wait(5)
    for _ in range(100):
        if registry.served("place").run_id == "retrain-2":
            break
        time.sleep(0.05)
    assert registry.served("place").run_id == "retrain-2"
    assert "serving it cold" in caplog.text
