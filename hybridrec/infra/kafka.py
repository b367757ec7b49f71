"""Apache Kafka in KRaft mode (each process is broker and controller), run from Maven Central's jars.

``kafka.nodes`` processes form one cluster: node i has node id i + 1, listens on ``port + i`` and
``controller_port + i``, and all of them vote in the controller quorum. One node keeps the names
(service ``kafka``, ``config/server.properties``) it had before clusters existed.

There is no Kafka tarball on Maven Central, so the classpath is the broker artefact plus its runtime
dependencies, resolved by Maven, plus the logging backend the official distribution adds (the
published POM leaves it out).
"""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid
from pathlib import Path

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from hybridrec.config import Settings
from hybridrec.infra.maven import Artifact, fetch_with_dependencies
from hybridrec.infra.services import Launch, ProcessService, ServiceError, java_home, render_template, tail

log = logging.getLogger(__name__)

# The slf4j binding and log4j 1.x fork that Kafka 3.9's own distribution ships in libs/.
LOGGING_JARS = (
    Artifact("org.slf4j", "slf4j-reload4j", "1.7.36"),
    Artifact("ch.qos.reload4j", "reload4j", "1.2.25"),
)


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what `random-uuid` prints).

    Kafka rejects ids starting with '-' (they read as a command-line flag), so those are redrawn.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap, client_id="hybridrec-infra",
                            bootstrap_timeout_ms=5000, request_timeout_ms=10000)


def topic_specs(settings: Settings) -> dict[str, dict]:
    """The project's topics with their partitions and retention, in `create_topics` form."""
    k = settings.kafka
    retention_ms = str(k.retention_hours * 3600 * 1000)
    return {
        name: {"num_partitions": k.partitions, "replication_factor": k.replication_factor,
               "configs": {"retention.ms": retention_ms, "min.insync.replicas": str(k.min_insync_replicas)}}
        for name in (k.events_topic, k.queries_topic, k.dead_letter_topic)
    }


def ensure_topics(settings: Settings) -> list[str]:
    """Create the configured topics that do not exist yet; return the names created (idempotent)."""
    wanted = topic_specs(settings)
    admin = _admin(settings)
    try:
        existing = set(admin.list_topics())
        missing = {name: spec for name, spec in wanted.items() if name not in existing}
        if missing:
            try:
                admin.create_topics(missing, wait_for_metadata=True)
            except TopicAlreadyExistsError:  # another `up` created them meanwhile
                log.info("topics %s were created concurrently", sorted(missing))
                return []
            log.info("created topics %s (%d partitions, retention %dh)", sorted(missing),
                     settings.kafka.partitions, settings.kafka.retention_hours)
        return sorted(missing)
    finally:
        admin.close()


def kafka_nodes(settings: Settings) -> list["KafkaService"]:
    """One service per configured node: started together, since a quorum needs a majority to elect."""
    return [KafkaService(settings, node) for node in range(settings.kafka.nodes)]


class KafkaService(ProcessService):
    health_timeout_s = 90.0

    def __init__(self, settings: Settings, node: int = 0) -> None:
        self.node = node
        self.name = "kafka" if settings.kafka.nodes == 1 else f"kafka-{node + 1}"
        super().__init__(settings)

    @property
    def host(self) -> str:
        return self.settings.kafka.host

    @property
    def ports(self) -> list[int]:
        return list(self.settings.kafka.node_ports[self.node])

    @property
    def install_dir(self) -> Path:
        k = self.settings.kafka
        return self.root / f"kafka_{k.scala}-{k.version}"

    @property
    def libs_dir(self) -> Path:
        return self.install_dir / "libs"

    @property
    def server_properties(self) -> Path:
        suffix = "" if self.settings.kafka.nodes == 1 else f"-{self.node + 1}"
        return self.install_dir / "config" / f"server{suffix}.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.install_dir / "config" / "log4j.properties"

    def _java(self, main_class: str, *args: str) -> list[str]:
        k = self.settings.kafka
        return [str(java_home() / "bin" / "java"), f"-Xms{k.heap_mb}m", f"-Xmx{k.heap_mb}m",
                "-Djava.awt.headless=true", f"-Dlog4j.configuration={self.log4j_properties.as_uri()}",
                "-cp", f"{self.libs_dir}/*", main_class, *args]

    def install(self) -> None:
        k = self.settings.kafka
        broker = Artifact("org.apache.kafka", f"kafka_{k.scala}", k.version)
        fetch_with_dependencies([broker, *LOGGING_JARS], self.libs_dir, self.install_log)
        self.server_properties.parent.mkdir(parents=True, exist_ok=True)
        self.server_properties.write_text(self.server_config())
        self.log4j_properties.write_text(render_template("kafka-log4j.properties"))
        self._format_storage()

    def server_config(self) -> str:
        """This node's server.properties: its id and listeners, the whole quorum, the topics' replication."""
        k = self.settings.kafka
        port, controller_port = self.ports
        voters = ",".join(f"{i + 1}@{k.host}:{cport}" for i, (_, cport) in enumerate(k.node_ports))
        return render_template(
            "kafka-server.properties", node_id=self.node + 1, voters=voters, host=k.host, port=port,
            controller_port=controller_port, log_dirs=self.data_dir, partitions=k.partitions,
            retention_hours=k.retention_hours, replication_factor=k.replication_factor,
            min_insync_replicas=k.min_insync_replicas)

    def _format_storage(self) -> None:
        """KRaft needs its log dir stamped with a cluster id once; later starts reuse it."""
        if (self.data_dir / "meta.properties").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = self._formatted_peer_cluster_id() or new_cluster_id()
        log.info("formatting Kafka storage %s (cluster id %s)", self.data_dir, cluster_id)
        argv = self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.server_properties))
        with self.install_log.open("a") as out:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise ServiceError(f"kafka storage format failed (exit {result.returncode}); log {self.install_log}:\n"
                               f"{tail(self.install_log)}")

    def _formatted_peer_cluster_id(self) -> str | None:
        """The cluster id another node of this cluster was formatted with: every node must carry the same."""
        for peer in kafka_nodes(self.settings):
            meta = peer.data_dir / "meta.properties"
            if peer.node != self.node and meta.exists():
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        return line.removeprefix("cluster.id=").strip()
        return None

    def launch(self) -> Launch:
        return Launch(argv=self._java("kafka.Kafka", str(self.server_properties)), cwd=self.install_dir, env={})

    def probe(self) -> str:
        admin = _admin(self.settings)
        try:
            cluster = admin.describe_cluster()
            topics = [t for t in admin.list_topics() if not t.startswith("__")]
        finally:
            admin.close()
        brokers = len(cluster["brokers"])
        if brokers < self.settings.kafka.nodes:
            raise ServiceError(f"{brokers} of {self.settings.kafka.nodes} brokers registered")
        return f"cluster {cluster['cluster_id']}, {brokers} broker(s), {len(topics)} topic(s)"

    def on_healthy(self) -> None:
        try:
            ensure_topics(self.settings)
        except Exception as err:  # report any client error as the service failing, with its log
            raise ServiceError(f"kafka: creating topics failed: {err}; broker log {self.log_file}") from err
