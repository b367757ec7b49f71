"""`infra up / status / down` over every registered service, in registration order.

Services are built from the settings by the factories in ``REGISTRY``; other modules add theirs
with :func:`register` (e.g. an install-only service that puts Spark's Iceberg jars in place).
A factory gives one service or a group of them (the nodes of one cluster): `up` starts a group's
processes all at once and then waits for each, group after group, and stops at the first failure;
`down` stops the groups in reverse order, each group's nodes at once. ``infra.topology`` is read here
and nowhere else outside the config: the cluster topology adds a PostgreSQL catalog server and a
Spark standalone cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from hybridrec.config import Settings
from hybridrec.infra.kafka import kafka_nodes
from hybridrec.infra.lakehouse import LakehouseService
from hybridrec.infra.opensearch import opensearch_nodes
from hybridrec.infra.postgres import PostgresService
from hybridrec.infra.services import ProcessService, Service, ServiceStatus, services_lock
from hybridrec.infra.spark_standalone import SparkMasterService, spark_workers

log = logging.getLogger(__name__)

ServiceFactory = Callable[[Settings], Service | Sequence[Service]]


def catalog_server(settings: Settings) -> list[Service]:
    return [PostgresService(settings)] if settings.infra.topology == "cluster" else []


def spark_master(settings: Settings) -> list[Service]:
    return [SparkMasterService(settings)] if settings.infra.topology == "cluster" else []


def spark_cluster_workers(settings: Settings) -> list[Service]:
    return list(spark_workers(settings)) if settings.infra.topology == "cluster" else []


REGISTRY: list[ServiceFactory] = [kafka_nodes, opensearch_nodes, catalog_server, spark_master,
                                  spark_cluster_workers, LakehouseService]


def register(factory: ServiceFactory) -> None:
    """Add a service that `up`/`status`/`down` manage after those already registered (once)."""
    if factory not in REGISTRY:
        REGISTRY.append(factory)


def build_groups(settings: Settings) -> list[list[Service]]:
    groups = []
    for factory in REGISTRY:
        built = factory(settings)
        group = list(built) if isinstance(built, Sequence) else [built]
        if group:
            groups.append(group)
    return groups


def build_services(settings: Settings) -> list[Service]:
    return [service for group in build_groups(settings) for service in group]


def up(settings: Settings) -> list[ServiceStatus]:
    """Install (cached), start and health-check every service; already running ones are left alone.

    Raises ``ServiceError`` naming the service, what broke and its log.
    """
    statuses: list[ServiceStatus] = []
    with services_lock(settings):
        for group in build_groups(settings):
            for service in group:
                if isinstance(service, ProcessService):
                    service.start()
            statuses += [service.up() for service in group]
    return statuses


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status() for service in build_services(settings)]


def down(settings: Settings) -> list[ServiceStatus]:
    """Stop what `up` started (found by pid files); data and installs stay for the next `up`."""
    stopped: list[ServiceStatus] = []
    with services_lock(settings):
        for group in reversed(build_groups(settings)):
            # A group's nodes stop together: stopped one by one, the last Kafka node would wait for a
            # controller quorum that has already gone before it shuts down.
            with ThreadPoolExecutor(max_workers=len(group)) as pool:
                stopped = list(pool.map(lambda service: service.down(), group)) + stopped
    return stopped
