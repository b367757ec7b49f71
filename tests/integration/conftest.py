"""The real services for integration tests: started once per session, stopped only if we started them."""

from __future__ import annotations

import pytest

from hybridrec.config import Settings, load_settings
from hybridrec.infra import manager


@pytest.fixture(scope="session")
def services() -> Settings:
    """Settings whose Kafka and OpenSearch are up and healthy (`hybridrec infra up`, done here if needed).

    If every service was already running (a developer's `infra up`), they are left running afterwards;
    otherwise this session brought them up and takes them down again.
    """
    settings = load_settings()
    already_running = all(s.running for s in manager.status(settings))
    manager.up(settings)
    yield settings
    if not already_running:
        manager.down(settings)
