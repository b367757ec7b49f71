"""A Spark standalone cluster (a master and workers) run from the pyspark distribution's own jars.

`infra up` starts ``spark-class org.apache.spark.deploy.master.Master`` on the address in
``spark.master`` and ``infra.spark_standalone.workers`` workers that register with it; every Spark
job then runs its executors in the workers' JVMs, apart from the driver.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from hybridrec.config import Settings
from hybridrec.infra.opensearch import http_json
from hybridrec.infra.services import Launch, ProcessService, ServiceError, java_home


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def master_address(settings: Settings) -> tuple[str, int]:
    parsed = urlparse(settings.spark.master)
    if parsed.scheme != "spark" or parsed.hostname is None or parsed.port is None:
        raise ServiceError(f"spark.master must be spark://HOST:PORT for a standalone cluster, "
                           f"got {settings.spark.master!r}")
    return parsed.hostname, parsed.port


def master_state(settings: Settings) -> dict:
    """The master's own JSON view: its status and every worker it knows."""
    host, _ = master_address(settings)
    return http_json(f"http://{host}:{settings.infra.spark_standalone.master_webui_port}/json/")


class _SparkDaemon(ProcessService):
    health_timeout_s = 90.0

    @property
    def host(self) -> str:
        return master_address(self.settings)[0]

    @property
    def install_dir(self) -> Path:
        return spark_home()

    def install(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _launch(self, main_class: str, *args: str) -> Launch:
        cfg = self.settings.infra.spark_standalone
        env = {"SPARK_HOME": str(spark_home()), "JAVA_HOME": str(java_home()), "SPARK_LOCAL_IP": self.host,
               "SPARK_DAEMON_MEMORY": f"{cfg.daemon_heap_mb}m"}
        return Launch(argv=[str(spark_home() / "bin" / "spark-class"), main_class, *args], cwd=self.data_dir, env=env)


class SparkMasterService(_SparkDaemon):
    name = "spark-master"

    @property
    def ports(self) -> list[int]:
        return [master_address(self.settings)[1], self.settings.infra.spark_standalone.master_webui_port]

    def launch(self) -> Launch:
        port, webui = self.ports
        return self._launch("org.apache.spark.deploy.master.Master", "--host", self.host, "--port", str(port),
                            "--webui-port", str(webui))

    def probe(self) -> str:
        state = master_state(self.settings)
        if state.get("status") != "ALIVE":
            raise ServiceError(f"master status {state.get('status')}")
        alive = sum(worker["state"] == "ALIVE" for worker in state["workers"])
        return f"{state['url']} {state['status']}, {alive} worker(s) alive"


def spark_workers(settings: Settings) -> list["SparkWorkerService"]:
    return [SparkWorkerService(settings, index) for index in range(settings.infra.spark_standalone.workers)]


class SparkWorkerService(_SparkDaemon):
    def __init__(self, settings: Settings, index: int) -> None:
        self.index = index
        self.name = f"spark-worker-{index + 1}"
        super().__init__(settings)

    @property
    def ports(self) -> list[int]:
        cfg = self.settings.infra.spark_standalone
        return [cfg.worker_port + self.index, cfg.worker_webui_port + self.index]

    def launch(self) -> Launch:
        cfg = self.settings.infra.spark_standalone
        port, webui = self.ports
        return self._launch("org.apache.spark.deploy.worker.Worker", self.settings.spark.master,
                            "--host", self.host, "--port", str(port), "--webui-port", str(webui),
                            "--cores", str(cfg.worker_cores), "--memory", cfg.worker_memory,
                            "--work-dir", str(self.data_dir / "work"))

    def probe(self) -> str:
        """Healthy once the master lists this worker (by its port) as alive."""
        port = self.ports[0]
        for worker in master_state(self.settings)["workers"]:
            if worker["port"] == port and worker["state"] == "ALIVE":
                return f"registered with {self.settings.spark.master}: {worker['cores']} core(s), {worker['memory']} MB"
        raise ServiceError(f"not registered with the master at {self.settings.spark.master}")
