"""Spark + Iceberg as an `infra` service: nothing to run (Spark's own processes, if any, are other
services), but jars to fetch
and a catalog to open. `up` puts the Iceberg Spark runtime and JDBC driver in the cache and creates
the contract's namespaces, so the first Spark job of a run does not pay for either."""

from __future__ import annotations

from hybridrec.config import Settings
from hybridrec.infra.maven import ArtifactError
from hybridrec.infra.services import ServiceError, ServiceStatus
from hybridrec.lake import Lake
from hybridrec.spark import spark_artifacts, spark_jars


class LakehouseService:
    name = "spark+iceberg"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.log = settings.home_path / "logs" / "maven-spark.log"

    def _status(self, healthy: bool, detail: str) -> ServiceStatus:
        return ServiceStatus(self.name, None, healthy, healthy, None, detail, self.log)

    def up(self) -> ServiceStatus:
        try:
            jars = spark_jars(self.settings)
            Lake(self.settings).ensure_namespaces()
        except ArtifactError as err:
            raise ServiceError(f"{self.name}: {err}") from err
        return self._status(True, f"{len(jars)} jars cached, catalog {self.settings.catalog_uri}")

    def status(self) -> ServiceStatus:
        cache = self.settings.home_path / "cache" / "spark-jars"
        missing = [a.file_name for a in spark_artifacts(self.settings) if not (cache / a.file_name).exists()]
        if missing:
            return self._status(False, f"jars not fetched yet: {', '.join(missing)}")
        return self._status(True, f"Spark {self.settings.spark.master} ready, catalog {self.settings.catalog_uri}")

    def down(self) -> ServiceStatus:
        return self.status()
