"""The real services for integration tests: started once per session, stopped only if we started them."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from hybridrec.batch.jobs import generate_world_job
from hybridrec.config import Settings, load_settings
from hybridrec.infra import manager
from hybridrec.search import SearchStore


@pytest.fixture(scope="session")
def services() -> Settings:
    """Settings whose Kafka and OpenSearch are up and healthy (`hybridrec infra up`, done here if needed).

    If every service was already running (a developer's `infra up`), they are left running afterwards;
    otherwise this session brought them up and takes them down again.
    """
    settings = load_settings()
    already_running = all(s.running for s in manager.status(settings))
    try:
        manager.up(settings)
    except Exception:
        if not already_running:  # leave nothing half-started behind
            manager.down(settings)
        raise
    yield settings
    if not already_running:
        manager.down(settings)


CLUSTER_ENV = {"HYBRIDREC__INFRA__TOPOLOGY": "cluster"}


def _service_rss_mb(statuses) -> float:
    total_kb = 0
    for status in statuses:
        if status.pid is not None:
            for line in Path(f"/proc/{status.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


@pytest.fixture(scope="module")
def cluster():
    """Settings of the cluster topology with every node up; stopped again after the module unless it was
    already running (per module, so its ten processes do not idle beside the rest of the suite)."""
    settings = load_settings(environ={**os.environ, **CLUSTER_ENV})
    already_running = all(s.running for s in manager.status(settings))
    started = time.monotonic()
    try:
        statuses = manager.up(settings)
    except Exception:
        if not already_running:
            manager.down(settings)
        raise
    print(f"\ncluster up in {time.monotonic() - started:.0f}s, services' RSS {_service_rss_mb(statuses):.0f} MB")
    yield settings
    if not already_running:
        manager.down(settings)
        survivors = [s.name for s in manager.status(settings) if s.pid is not None]
        assert not survivors, f"cluster processes survived `infra down`: {survivors}"


SMALL_WORLD = {"SYNTHETIC__N_USERS": "600", "SYNTHETIC__N_PLACES": "200", "SYNTHETIC__N_CLIPS": "600",
               "SYNTHETIC__N_EVENTS": "60000", "SYNTHETIC__N_DAYS": "14", "RETRAIN__GRAPH_FILTER__IDEAL_RANK": "32",
               "RETRAIN__SELECTION__TRIALS": "3", "RETRAIN__SELECTION__BUDGET_S": "30",
               "RETRAIN__SELECTION__MAX_GRAPH_RANK": "64", "RETRAIN__SELECTION__RANKER_TRIALS": "3",
               "RETRAIN__SELECTION__RANKER_BUDGET_S": "20"}  # model selection on a small budget


def small_world_environ(root: Path, sizes: dict[str, str] = SMALL_WORLD) -> dict[str, str]:
    """Environment overrides for a small world with its own lake, models dir and index prefix under ``root``."""
    environ = {f"HYBRIDREC__{k}": v for k, v in sizes.items()}
    environ.update({"HYBRIDREC__LAKE__URI": f"sqlite:///{root / 'catalog.db'}",
                    "HYBRIDREC__LAKE__WAREHOUSE": (root / "warehouse").as_uri(),
                    "HYBRIDREC__RETRAIN__MODELS_DIR": str(root / "models"),
                    "HYBRIDREC__OPENSEARCH__INDEX_PREFIX": f"test-{secrets.token_hex(4)}"})
    return environ


def delete_test_indices(settings: Settings) -> None:
    SearchStore(settings).client.indices.delete(index=f"{settings.opensearch.index_prefix}-*", ignore_unavailable=True)


@pytest.fixture(scope="module")
def small_world_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a small world: the process's own (ports included) plus its overrides, as a
    child process (``hybridrec serve``) would be given it."""
    return {**os.environ, **small_world_environ(tmp_path_factory.mktemp("world"))}


@pytest.fixture(scope="module")
def small_world(services, small_world_env) -> Settings:
    """Settings of a freshly generated small synthetic world (nothing shared with the quick start or
    other modules); its indices are deleted afterwards."""
    settings = load_settings(environ=small_world_env)
    generate_world_job(settings)
    yield settings
    delete_test_indices(settings)
