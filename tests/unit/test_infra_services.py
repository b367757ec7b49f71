"""The service manager's own logic, exercised with tiny stand-in processes instead of Kafka/OpenSearch."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from hybridrec.config import Settings, load_settings
from hybridrec.infra import manager
from hybridrec.infra.kafka import KafkaService, kafka_nodes, new_cluster_id, topic_specs
from hybridrec.infra.opensearch import OpenSearchService, extract_zip, opensearch_nodes, painless_classname
from hybridrec.infra.postgres import PostgresService
from hybridrec.infra.services import (
    Launch, ProcessService, ServiceError, ServiceStatus, java_home, port_accepts, port_in_use,
    pid_alive, process_has_marker, read_pid, render_template, require_loopback, require_reachable_by_others,
    spawn_detached, stop_pid,
)
from hybridrec.infra.spark_standalone import SparkWorkerService


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={"HYBRIDREC__HOME": str(tmp_path / "home")})


class HttpService(ProcessService):
    """A stand-in daemon: Python's http.server serving its install folder (which marks its command line)."""

    name = "web"
    health_timeout_s = 15.0
    stop_timeout_s = 5.0

    def __init__(self, settings, port: int | None = None, argv: list[str] | None = None) -> None:
        super().__init__(settings)
        self.port = port or free_port()
        self.argv = argv
        self.installs = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def ports(self) -> list[int]:
        return [self.port]

    @property
    def install_dir(self) -> Path:
        return self.root / "web-1.0"

    def install(self) -> None:
        self.installs += 1
        self.install_dir.mkdir(parents=True, exist_ok=True)

    def launch(self) -> Launch:
        if self.argv is not None:  # the install folder rides along as an argument: it marks the process as ours
            return Launch(argv=[*self.argv, str(self.install_dir)], cwd=self.install_dir, env={})
        return Launch(argv=[sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                            "--directory", str(self.install_dir)], cwd=self.install_dir, env={})

    def probe(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2) as response:
            return f"http {response.status}"


@pytest.fixture
def web(settings):
    service = HttpService(settings)
    yield service
    service.down()


# --- pid files, ports, processes -------------------------------------------------------------

def test_read_pid_handles_missing_and_garbage(tmp_path):
    pid_file = tmp_path / "x.pid"
    assert read_pid(pid_file) is None
    pid_file.write_text("not a pid\n")
    assert read_pid(pid_file) is None
    pid_file.write_text("1234\n")
    assert read_pid(pid_file) == 1234


def test_port_checks_see_a_listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        assert port_accepts("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)
    assert not port_accepts("127.0.0.1", port)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_accepted(host):
    require_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org"])
def test_other_hosts_are_refused(host):
    with pytest.raises(ServiceError, match="loopback"):
        require_loopback(host)


def test_spawned_process_is_detached_marked_and_stopped(tmp_path):
    marker = str(tmp_path / "marker-dir")
    log_file = tmp_path / "logs" / "sleep.log"
    code = "import time; print('started', flush=True); time.sleep(60)"
    pid = spawn_detached(Launch(argv=[sys.executable, "-c", code, marker], cwd=tmp_path, env={}), log_file)
    assert process_has_marker(pid, marker)
    assert not process_has_marker(pid, "some-other-marker")
    assert os.getsid(pid) != os.getsid(0)  # own session: a Ctrl-C in the caller's terminal does not reach it
    while "started" not in log_file.read_text():  # its output lands in the log
        time.sleep(0.05)
    stop_pid(pid, timeout_s=5)
    assert not pid_alive(pid)


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path):
    marker = str(tmp_path / "stubborn")
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")
    log_file = tmp_path / "stubborn.log"
    pid = spawn_detached(Launch(argv=[sys.executable, "-c", code, marker], cwd=tmp_path, env={}), log_file)
    while "ready" not in log_file.read_text():  # SIGTERM must arrive after the handler is set
        time.sleep(0.05)
    started = time.monotonic()
    stop_pid(pid, timeout_s=1)
    assert not pid_alive(pid)
    assert time.monotonic() - started < 8


def test_java_home_reports_a_missing_jdk(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServiceError, match="java not found"):
        java_home()


# --- the life cycle, on the stand-in daemon --------------------------------------------------

def test_up_starts_once_and_down_stops(web):
    first = web.up()
    assert first.running and first.healthy and first.pid
    assert read_pid(web.pid_file) == first.pid
    second = web.up()
    assert second.pid == first.pid
    assert web.installs == 1  # already running: not reinstalled, not restarted
    assert web.status() == ServiceStatus("web", web.port, True, True, first.pid, "http 200", web.log_file)
    stopped = web.down()
    assert not stopped.running and stopped.pid is None
    assert not web.pid_file.exists()
    assert not process_has_marker(first.pid, str(web.install_dir))
    assert web.status().detail == "stopped"


class SlowExecService(HttpService):
    """Its command line carries the marker only after an exec 1.5 s in, like a launcher script's."""

    def launch(self) -> Launch:
        script = ("import os, sys, time; time.sleep(1.5); os.execv(sys.executable, [sys.executable, '-m', "
                  "'http.server', sys.argv[1], '--bind', '127.0.0.1', '--directory', sys.argv[2][::-1]])")
        return Launch(argv=[sys.executable, "-c", script, str(self.port), str(self.install_dir)[::-1]],
                      cwd=self.install_dir, env={})


def test_a_process_just_started_is_not_started_again_before_its_marker_shows(settings):
    service = SlowExecService(settings)
    try:
        pid = service.start()
        assert not process_has_marker(pid, service.marker)  # still before the exec
        assert service.up().pid == pid
        assert service.log_file.read_text().count("starting web") == 1
    finally:
        service.down()


def test_stale_pid_file_is_reported_and_replaced(web):
    web.pid_file.parent.mkdir(parents=True)
    web.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not ours: must never be signalled
    status = web.status()
    assert not status.running and status.detail == "stopped (stale pid file)"
    web.down()  # had it signalled the pid in the file, this test process would be gone
    assert web.up().pid != os.getpid()


def test_port_taken_by_a_foreign_process_is_an_error(web):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", web.port))
        sock.listen()
        assert "in use by another process" in web.status().detail
        with pytest.raises(ServiceError, match=f"port 127.0.0.1:{web.port} is already taken"):
            web.up()
    assert not web.pid_file.exists()


def test_exit_during_start_up_reports_the_log_tail(settings):
    service = HttpService(settings, argv=[sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(3)"])
    with pytest.raises(ServiceError, match="exited during start-up") as err:
        service.up()
    assert "boom: bad config" in str(err.value) and str(service.log_file) in str(err.value)
    assert not service.pid_file.exists()


def test_health_timeout_reports_the_log_tail(settings):
    class NeverHealthy(HttpService):
        health_timeout_s = 2.0

        def probe(self) -> str:
            raise RuntimeError("still warming up")

    service = NeverHealthy(settings)
    try:
        with pytest.raises(ServiceError, match="not healthy after 2s") as err:
            service.up()
        assert "still warming up" in str(err.value)
        assert "starting web" in str(err.value)  # the tail of the service log
    finally:
        service.down()


def test_manager_runs_registered_services_in_order(settings, monkeypatch):
    calls: list[str] = []

    class JarsOnly:
        """An install-only service, as the Spark/Iceberg jars will be: no process, no port."""

        name = "jars"

        def __init__(self, settings) -> None:
            self.log = settings.home_path / "jars.log"

        def _status(self, detail: str) -> ServiceStatus:
            calls.append(detail)
            return ServiceStatus(self.name, None, False, True, None, detail, self.log)

        def up(self) -> ServiceStatus:
            return self._status("installed")

        def status(self) -> ServiceStatus:
            return self._status("present")

        def down(self) -> ServiceStatus:
            return self._status("nothing to stop")

    web = HttpService(settings)
    monkeypatch.setattr(manager, "REGISTRY", [lambda _settings: web])
    manager.register(JarsOnly)
    manager.register(JarsOnly)
    assert len(manager.REGISTRY) == 2
    try:
        assert [(s.name, s.healthy) for s in manager.up(settings)] == [("web", True), ("jars", True)]
        assert [s.name for s in manager.status(settings)] == ["web", "jars"]
        calls.clear()
        down = manager.down(settings)
        assert [s.name for s in down] == ["web", "jars"] and not down[0].running
        assert calls == ["nothing to stop"]
    finally:
        web.down()


# --- Kafka and OpenSearch specifics that need no running service -----------------------------

def test_cluster_id_looks_like_kafkas():
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") and "=" not in i for i in ids)


def test_topics_follow_the_config(settings):
    specs = topic_specs(settings)
    k = settings.kafka
    assert set(specs) == {k.events_topic, k.queries_topic, k.dead_letter_topic}
    assert all(s["num_partitions"] == k.partitions and s["replication_factor"] == 1 for s in specs.values())
    assert specs[k.events_topic]["configs"]["retention.ms"] == str(k.retention_hours * 3_600_000)
    assert specs[k.events_topic]["configs"]["min.insync.replicas"] == "1"


def test_kafka_config_rendering(settings):
    service = KafkaService(settings)
    text = service.server_config()
    lines = set(text.splitlines())
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in lines
    assert {"node.id=1", "controller.quorum.voters=1@127.0.0.1:9093"} <= lines
    assert "process.roles=broker,controller" in lines
    assert "auto.create.topics.enable=false" in lines
    assert f"log.dirs={service.data_dir}" in lines and "log.retention.hours=168" in lines
    assert {"offsets.topic.replication.factor=1", "transaction.state.log.min.isr=1"} <= lines
    assert "$" not in text
    with pytest.raises(KeyError):
        render_template("kafka-server.properties", host="127.0.0.1")


def test_kafka_runs_kraft_from_the_project_folder(settings):
    service = KafkaService(settings)
    argv = service.launch().argv
    assert argv[-2:] == ["kafka.Kafka", str(service.server_properties)]
    assert f"{service.libs_dir}/*" in argv and f"-Xmx{settings.kafka.heap_mb}m" in argv
    assert service.install_dir.is_relative_to(settings.home_path / "services")
    assert service.ports == [settings.kafka.port, settings.kafka.controller_port]
    assert service.name == "kafka" and service.server_properties.name == "server.properties"


def test_opensearch_config_rendering(settings):
    service = OpenSearchService(settings)
    lines = set(service.node_config().splitlines())
    assert {"discovery.type: single-node", "node.name: hybridrec-1", "network.host: 127.0.0.1", "http.port: 9200",
            "transport.port: 9300", f"path.data: {service.data_dir}", f"path.logs: {service.server_logs_dir}",
            "cluster.routing.allocation.disk.threshold_enabled: false"} <= lines
    assert service.config_dir == service.install_dir / "config" and service.name == "opensearch"


def test_opensearch_launch_sets_heap_and_java(settings):
    launch = OpenSearchService(settings).launch()
    heap = settings.opensearch.heap_mb
    assert launch.env["OPENSEARCH_JAVA_OPTS"] == f"-Xms{heap}m -Xmx{heap}m"
    assert Path(launch.env["OPENSEARCH_JAVA_HOME"], "bin", "java").exists()
    assert launch.user == ("hybridrec" if os.geteuid() == 0 else None)


def test_extract_zip_keeps_execute_bits(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        script = zipfile.ZipInfo("pkg/bin/run")
        script.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(script, "#!/bin/sh\necho hi\n")
        zf.writestr("pkg/README", "text")
    extract_zip(archive, tmp_path / "out")
    assert os.access(tmp_path / "out" / "pkg" / "bin" / "run", os.X_OK)
    assert (tmp_path / "out" / "pkg" / "README").read_text() == "text"


@pytest.mark.parametrize("cls", ["org.opensearch.painless.PainlessPlugin",
                                 "org.opensearch.painless.PainlessModulePlugin"])
def test_painless_classname_is_read_from_the_jar(tmp_path, cls):
    jar = tmp_path / "lang-painless.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr(cls.replace(".", "/") + ".class", b"")
        zf.writestr("org/opensearch/painless/Other.class", b"")
    assert painless_classname(jar) == cls
    text = render_template("painless-plugin-descriptor.properties", version="2.19.1", classname=cls)
    assert f"classname={cls}" in text.splitlines() and "opensearch.version=2.19.1" in text.splitlines()


def test_folders_hidden_from_other_users_are_reported():
    root = Path(tempfile.mkdtemp())  # pytest's own tmp_path sits in a private folder
    try:
        root.chmod(0o755)
        (root / "private" / "inside").mkdir(parents=True)
        require_reachable_by_others(root / "private" / "inside")
        (root / "private").chmod(0o700)
        with pytest.raises(ServiceError, match=f"{root / 'private'} is not searchable"):
            require_reachable_by_others(root / "private" / "inside")
    finally:
        shutil.rmtree(root)


# --- the cluster topology: same services, one per node, and the servers only a cluster needs ----------

@pytest.fixture
def cluster_settings(tmp_path) -> Settings:
    return load_settings(environ={"HYBRIDREC__INFRA__TOPOLOGY": "cluster", "HYBRIDREC__HOME": str(tmp_path)})


def test_cluster_topology_builds_a_service_per_node(cluster_settings, settings):
    assert [s.name for s in manager.build_services(settings)] == ["kafka", "opensearch", "spark+iceberg"]
    groups = [[s.name for s in group] for group in manager.build_groups(cluster_settings)]
    assert groups == [["kafka-1", "kafka-2", "kafka-3"], ["opensearch-1", "opensearch-2", "opensearch-3"],
                      ["postgres"], ["spark-master"], ["spark-worker-1", "spark-worker-2"], ["spark+iceberg"]]
    ports = [p for s in manager.build_services(cluster_settings) if isinstance(s, ProcessService) for p in s.ports]
    assert len(ports) == len(set(ports))


def test_kafka_nodes_form_one_quorum(cluster_settings):
    third = kafka_nodes(cluster_settings)[2]
    lines = set(third.server_config().splitlines())
    assert {"node.id=3", "controller.quorum.voters=1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194",
            "listeners=PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19194", "min.insync.replicas=2",
            "offsets.topic.replication.factor=3", "transaction.state.log.min.isr=2"} <= lines
    assert third.server_properties.name == "server-3.properties" and third.data_dir.name == "kafka-3"
    specs = topic_specs(cluster_settings)
    assert all(s["replication_factor"] == 3 and s["configs"]["min.insync.replicas"] == "2" for s in specs.values())


def test_opensearch_nodes_find_each_other_on_loopback(cluster_settings):
    second = opensearch_nodes(cluster_settings)[1]
    text = second.node_config()
    assert "discovery.type" not in text
    assert 'discovery.seed_hosts: ["127.0.0.1:19300", "127.0.0.1:19301", "127.0.0.1:19302"]' in text
    assert 'cluster.initial_cluster_manager_nodes: ["hybridrec-1", "hybridrec-2", "hybridrec-3"]' in text
    assert {"node.name: hybridrec-2", "http.port: 19201", "transport.port: 19301"} <= set(text.splitlines())
    assert second.launch().env["OPENSEARCH_PATH_CONF"] == str(second.config_dir) != str(second.install_dir / "config")


def test_spark_workers_register_with_the_configured_master(cluster_settings):
    worker = SparkWorkerService(cluster_settings, 1)
    argv = worker.launch().argv
    assert argv[1:3] == ["org.apache.spark.deploy.worker.Worker", "spark://127.0.0.1:17077"]
    assert worker.ports == [17079, 18082] and worker.launch().env["SPARK_DAEMON_MEMORY"] == "256m"


def test_postgres_serves_the_catalog_uri(cluster_settings):
    service = PostgresService(cluster_settings)
    assert (service.host, service.ports) == ("127.0.0.1", [15432])
    assert (service.user, service.database) == ("hybridrec", "iceberg")
    assert service.marker == str(service.data_dir)  # the machine's binaries are shared: the data folder is ours
    argv = service.launch().argv
    assert argv[1:3] == ["-D", str(service.data_dir)] and "listen_addresses=127.0.0.1" in argv
