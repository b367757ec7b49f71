"""`infra up / status / down` over every registered service, in registration order.

Services are built from the settings by the factories in ``REGISTRY``; other modules add theirs
with :func:`register` (e.g. an install-only service that puts Spark's Iceberg jars in place).
`up` starts them in order and stops at the first failure; `down` stops them in reverse order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hybridrec.config import Settings
from hybridrec.infra.kafka import KafkaService
from hybridrec.infra.lakehouse import LakehouseService
from hybridrec.infra.opensearch import OpenSearchService
from hybridrec.infra.services import Service, ServiceStatus, services_lock

log = logging.getLogger(__name__)

ServiceFactory = Callable[[Settings], Service]

REGISTRY: list[ServiceFactory] = [KafkaService, OpenSearchService, LakehouseService]


def register(factory: ServiceFactory) -> None:
    """Add a service that `up`/`status`/`down` manage after those already registered (once)."""
    if factory not in REGISTRY:
        REGISTRY.append(factory)


def build_services(settings: Settings) -> list[Service]:
    return [factory(settings) for factory in REGISTRY]


def up(settings: Settings) -> list[ServiceStatus]:
    """Install (cached), start and health-check every service; already running ones are left alone.

    Raises ``ServiceError`` naming the service, what broke and its log.
    """
    with services_lock(settings):
        return [service.up() for service in build_services(settings)]


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status() for service in build_services(settings)]


def down(settings: Settings) -> list[ServiceStatus]:
    """Stop what `up` started (found by pid files); data and installs stay for the next `up`."""
    with services_lock(settings):
        stopped = [service.down() for service in reversed(build_services(settings))]
    return stopped[::-1]
