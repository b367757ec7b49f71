"""Spark sessions wired to the project's Iceberg catalog.

Spark and pyiceberg share one catalog and warehouse: the SQL catalog that pyiceberg opens with a
SQLAlchemy URI is the same database Iceberg's JdbcCatalog opens with a JDBC URL. Jars are resolved
with Maven into the project cache and handed to Spark as local paths, so Spark never needs to reach
a repository by itself.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from hybridrec.config import Settings
from hybridrec.infra.maven import Artifact, fetch

log = logging.getLogger(__name__)
T = TypeVar("T")


def spark_artifacts(settings: Settings) -> list[Artifact]:
    spark = settings.spark
    runtime = f"iceberg-spark-runtime-{spark.spark_compat}_{spark.scala}"
    artifacts = [Artifact("org.apache.iceberg", runtime, spark.iceberg_version)]
    if settings.lake.kind == "sql":
        if settings.catalog_uri.startswith("sqlite"):
            artifacts.append(Artifact("org.xerial", "sqlite-jdbc", spark.sqlite_jdbc_version))
        elif settings.catalog_uri.startswith("postgresql"):
            artifacts.append(Artifact("org.postgresql", "postgresql", spark.postgres_jdbc_version))
    return artifacts


def spark_jars(settings: Settings) -> list[Path]:
    """Local paths of the jars Spark needs for Iceberg (fetched once, then cached)."""
    cache = settings.home_path / "cache" / "spark-jars"
    log_file = settings.home_path / "logs" / "maven-spark.log"
    return [fetch(artifact, cache, log_file) for artifact in spark_artifacts(settings)]


def jdbc_catalog_options(sqlalchemy_uri: str) -> dict[str, str]:
    """Translate the catalog's SQLAlchemy URI into Iceberg JdbcCatalog options."""
    if sqlalchemy_uri.startswith("sqlite:///"):
        return {"uri": "jdbc:sqlite:" + sqlalchemy_uri.removeprefix("sqlite:///")}
    parsed = urlparse(sqlalchemy_uri)
    if not parsed.scheme.startswith("postgresql"):
        raise ValueError(f"unsupported SQL catalog URI for Spark: {sqlalchemy_uri!r} (use sqlite or postgresql)")
    options = {"uri": f"jdbc:postgresql://{parsed.hostname}:{parsed.port or 5432}{parsed.path}"}
    if parsed.username:
        options["jdbc.user"] = unquote(parsed.username)
    if parsed.password:
        options["jdbc.password"] = unquote(parsed.password)
    return options


def catalog_conf(settings: Settings) -> dict[str, str]:
    """Spark conf entries that register the project's Iceberg catalog (twin of lake.pyiceberg_catalog_properties)."""
    name = settings.lake.catalog_name
    prefix = f"spark.sql.catalog.{name}"
    options: dict[str, str] = {"warehouse": settings.warehouse_uri}
    if settings.lake.kind == "sql":
        # V1 (with the iceberg_type column for views) is the layout pyiceberg 0.12 creates; both engines must agree.
        options.update({"type": "jdbc", "jdbc.schema-version": "V1", **jdbc_catalog_options(settings.catalog_uri)})
    else:
        options.update({"type": "rest", "uri": settings.catalog_uri})
    options.update(settings.lake.properties)
    conf = {prefix: "org.apache.iceberg.spark.SparkCatalog"}
    conf.update({f"{prefix}.{key}": value for key, value in options.items()})
    conf["spark.sql.defaultCatalog"] = name
    return conf


# The embedded SQLite catalog and its JDBC connections: a pooled connection can hold a read snapshot
# (WAL), and once pyiceberg (the generator, the stream's sink) has committed in between, that
# connection's next commit fails with SQLITE_BUSY_SNAPSHOT. A session's catalog pools its own
# connections, so a new session (``newSession()``: same SparkContext, cheap) starts from fresh ones.
# The helpers below are the project's only answers to it; a server-backed catalog never needs them.
STALE_CATALOG_ERROR = "SQLITE_BUSY"


@contextmanager
def spark_job(settings: Settings, app_name: str) -> Iterator[Any]:
    """A Spark session for one job's Spark steps, stopped afterwards (a long-lived one would keep stale
    catalog connections, above)."""
    session = spark_session(settings, app_name)
    try:
        yield session
    finally:
        session.stop()


def isolated_session(settings: Settings, app_name: str) -> Any:
    """A session whose catalog connections are its own, not ones left over from earlier work in the process."""
    return spark_session(settings, app_name).newSession()


def retry_stale_catalog(spark: Any, write: Callable[[Any], T], attempts: int = 3) -> tuple[Any, T]:
    """``write(session)`` retried in a new session when its commit meets a stale catalog snapshot;
    other errors are not retried, so ``write`` must be idempotent. Returns the session that succeeded."""
    for attempt in range(1, attempts + 1):
        try:
            return spark, write(spark)
        except Exception as err:  # py4j wraps the JVM error; only the catalog race is retried
            if STALE_CATALOG_ERROR not in str(err) or attempt == attempts:
                raise
            log.warning("commit met a stale SQLite catalog snapshot (attempt %d of %d); retrying in a new session",
                        attempt, attempts)
            spark = spark.newSession()
    raise AssertionError("unreachable: the last attempt returns or raises")


# The driver JVM is launched once per Python process, by its first session, and the ``spark.jars`` given
# then are its classpath for good: a later session's jars reach only its executors. A catalog whose JDBC
# driver that JVM lacks (a process that opened the SQLite catalog first, then a PostgreSQL one) fails in
# the driver with "No suitable driver found". The jars the running JVM was launched with:
_driver_jars: frozenset[str] = frozenset()


def _driver_jvm_with(jars: list[str]) -> None:
    """Leave the running driver JVM if it was launched with ``jars``, else shut it down so the next
    session launches one that has them (stopping any session first)."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    global _driver_jars
    gateway = SparkContext._gateway
    if gateway is None or set(jars) <= _driver_jars:
        return
    log.info("restarting the Spark driver JVM: it was launched without %s", sorted(set(jars) - _driver_jars))
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    if SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()
    gateway.shutdown()
    proc = getattr(gateway, "proc", None)
    if proc is not None:  # pyspark's gateway JVM exits when its stdin closes
        proc.stdin.close()
        proc.wait(timeout=60)
    SparkContext._gateway = None
    SparkContext._jvm = None
    _driver_jars = frozenset()


def spark_session(settings: Settings, app_name: str = "hybridrec"):
    """A Spark session (local mode by default) with Iceberg and the project catalog configured."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    global _driver_jars
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark_conf = settings.spark
    jars = [str(p) for p in spark_jars(settings)]
    _driver_jvm_with(jars)
    launching = SparkContext._gateway is None
    builder = (
        SparkSession.builder.master(spark_conf.master)
        .appName(app_name)
        .config("spark.jars", ",".join(jars))
        .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
        .config("spark.driver.memory", spark_conf.driver_memory)
        .config("spark.sql.shuffle.partitions", str(spark_conf.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", str(settings.home_path / "spark-warehouse"))
    )
    for key, value in {**catalog_conf(settings), **spark_conf.extra_conf}.items():
        builder = builder.config(key, value)
    active = SparkSession.getActiveSession()
    catalog_key = f"spark.sql.catalog.{settings.lake.catalog_name}.uri"
    if active is not None and active.conf.get(catalog_key, None) != catalog_conf(settings).get(catalog_key):
        # getOrCreate would hand back a session bound to another catalog (catalogs are cached per session).
        log.info("stopping the active Spark session: it is bound to another catalog")
        active.stop()
    session = builder.getOrCreate()
    if launching:
        _driver_jars = frozenset(jars)
    session.sparkContext.setLogLevel("WARN")
    log.info("spark session %s on %s, catalog %s", app_name, spark_conf.master, settings.lake.catalog_name)
    return session
