"""OpenSearch 2.x single node with the k-NN plugin, from the integ-test zip on Maven Central.

That zip is the minimal distribution: no bundled JDK, and of the modules only transport-netty4.
The k-NN plugin extends lang-painless, so the painless module is assembled from its Maven jars
(see ``_install_painless``). The k-NN zip carries no native libraries: vector fields use the
``lucene`` engine. OpenSearch refuses to run as root, so as root it runs as a system user.

``opensearch.nodes`` processes form one cluster (seed hosts on loopback); each has its own config
folder (a copy of the distribution's with its own ``opensearch.yml``), data and logs. One node keeps
the names and the distribution's config folder it had before clusters existed.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from hybridrec.config import Settings
from hybridrec.infra.maven import Artifact, fetch, fetch_with_dependencies
from hybridrec.infra.services import (
    Launch, ProcessService, ServiceError, chown_tree, java_home, render_template, require_reachable_by_others,
    service_user, tail,
)

log = logging.getLogger(__name__)

KNN_PLUGIN = "opensearch-knn"


def extract_zip(archive: Path, dest: Path) -> None:
    """Unzip keeping Unix permission bits (``zipfile`` drops them, and bin/ scripts must stay executable)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)


def painless_classname(plugin_jar: Path) -> str:
    """The module's entry class: ``PainlessPlugin`` in 2.x, ``PainlessModulePlugin`` in later releases."""
    with zipfile.ZipFile(plugin_jar) as zf:
        names = set(zf.namelist())
    for cls in ("org.opensearch.painless.PainlessModulePlugin", "org.opensearch.painless.PainlessPlugin"):
        if cls.replace(".", "/") + ".class" in names:
            return cls
    raise ServiceError(f"no painless plugin class in {plugin_jar}")


def http_json(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.load(response)


def opensearch_nodes(settings: Settings) -> list["OpenSearchService"]:
    """One service per configured node, started together (the first cluster manager needs a majority)."""
    return [OpenSearchService(settings, node) for node in range(settings.opensearch.nodes)]


def node_name(node: int) -> str:
    return f"hybridrec-{node + 1}"


class OpenSearchService(ProcessService):
    health_timeout_s = 180.0

    def __init__(self, settings: Settings, node: int = 0) -> None:
        self.node = node
        self.clustered = settings.opensearch.nodes > 1
        self.name = f"opensearch-{node + 1}" if self.clustered else "opensearch"
        super().__init__(settings)

    @property
    def host(self) -> str:
        return self.settings.opensearch.host

    @property
    def ports(self) -> list[int]:
        return list(self.settings.opensearch.node_ports[self.node])

    @property
    def config_dir(self) -> Path:
        return self.root / "config" / self.name if self.clustered else self.install_dir / "config"

    @property
    def install_dir(self) -> Path:
        return self.root / f"opensearch-{self.settings.opensearch.version}"

    @property
    def server_logs_dir(self) -> Path:
        """OpenSearch's own log files (its stdout goes to ``log_file`` as for every service)."""
        return self.logs_dir / f"{self.name}-server"

    def install(self) -> None:
        user = service_user()
        if user is not None:
            require_reachable_by_others(self.root)
        cfg = self.settings.opensearch
        marker = self.install_dir / ".hybridrec-installed"
        recipe = f"opensearch {cfg.version} + {KNN_PLUGIN} {cfg.knn_plugin_version}"
        if not (marker.exists() and marker.read_text() == recipe):
            self._install_fresh(user)
            marker.write_text(recipe)
        if self.clustered:
            self._copy_config()
        (self.config_dir / "opensearch.yml").write_text(self.node_config())
        if self.clustered and user is not None:
            chown_tree(self.config_dir, user)
        for folder in (self.data_dir, self.server_logs_dir):
            if not folder.exists():
                folder.mkdir(parents=True)
                if user is not None:
                    chown_tree(folder, user)

    def node_config(self) -> str:
        """This node's opensearch.yml: its name and ports, and how it finds the others (or that there are none)."""
        http_port, transport_port = self.ports
        return render_template(
            "opensearch.yml", node_name=node_name(self.node), discovery=self._discovery(),
            host=self.settings.opensearch.host, http_port=http_port, transport_port=transport_port,
            data_dir=self.data_dir, logs_dir=self.server_logs_dir)

    def _discovery(self) -> str:
        if not self.clustered:
            return "discovery.type: single-node"
        cfg = self.settings.opensearch
        seeds = ", ".join(f'"{cfg.host}:{transport}"' for _, transport in cfg.node_ports)
        managers = ", ".join(f'"{node_name(i)}"' for i in range(cfg.nodes))
        return f"discovery.seed_hosts: [{seeds}]\ncluster.initial_cluster_manager_nodes: [{managers}]"

    def _copy_config(self) -> None:
        """This node's config folder: the distribution's, with the JVM's relative GC-log and heap-dump
        paths pointed at the node's own folders (all nodes share one working folder)."""
        if self.config_dir.exists():
            shutil.rmtree(self.config_dir)
        shutil.copytree(self.install_dir / "config", self.config_dir,
                        ignore=shutil.ignore_patterns("opensearch.yml", "opensearch.keystore"))
        jvm_options = self.config_dir / "jvm.options"
        jvm_options.write_text(jvm_options.read_text()
                               .replace("file=logs/", f"file={self.server_logs_dir}/")
                               .replace("ErrorFile=logs/", f"ErrorFile={self.server_logs_dir}/")
                               .replace("HeapDumpPath=data", f"HeapDumpPath={self.data_dir}"))

    def _install_fresh(self, user: str | None) -> None:
        cfg = self.settings.opensearch
        distribution = fetch(Artifact("org.opensearch.distribution.integ-test-zip", "opensearch", cfg.version, "zip"),
                             self.cache_dir, self.install_log)
        knn_zip = fetch(Artifact("org.opensearch.plugin", KNN_PLUGIN, cfg.knn_plugin_version, "zip"),
                        self.cache_dir, self.install_log)
        if self.install_dir.exists():
            log.info("removing incomplete install %s", self.install_dir)
            shutil.rmtree(self.install_dir)
        log.info("unpacking %s into %s", distribution.name, self.root)
        extract_zip(distribution, self.root)
        if not self.install_dir.is_dir():
            raise ServiceError(f"{distribution} did not unpack to {self.install_dir}")
        self._install_painless()
        log.info("installing plugin %s", knn_zip.name)
        with self.install_log.open("a") as out:
            result = subprocess.run(
                [str(self.install_dir / "bin" / "opensearch-plugin"), "install", "--batch", knn_zip.as_uri()],
                env=self._env(), stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise ServiceError(f"installing {knn_zip.name} failed (exit {result.returncode}); "
                               f"log {self.install_log}:\n{tail(self.install_log)}")
        if user is not None:
            chown_tree(self.install_dir, user)

    def _install_painless(self) -> None:
        """Lay out modules/lang-painless as the full distribution has it: jars, descriptor, policy.

        Maven resolves the module with the whole server on its classpath; only the jars the
        distribution's lib/ lacks are kept, since a class present twice fails OpenSearch's jar-hell check.
        """
        version = self.settings.opensearch.version
        jars = fetch_with_dependencies([Artifact("org.opensearch.plugin", "lang-painless", version)],
                                       self.cache_dir / f"lang-painless-{version}", self.install_log)
        module = self.install_dir / "modules" / "lang-painless"
        module.mkdir(parents=True)
        in_lib = {jar.name for jar in (self.install_dir / "lib").glob("*.jar")}
        for jar in jars:
            if jar.name not in in_lib:
                shutil.copy2(jar, module / jar.name)
        classname = painless_classname(module / f"lang-painless-{version}.jar")
        (module / "plugin-descriptor.properties").write_text(
            render_template("painless-plugin-descriptor.properties", version=version, classname=classname))
        (module / "plugin-security.policy").write_text(render_template("painless-plugin-security.policy"))

    def _env(self) -> dict[str, str]:
        heap = self.settings.opensearch.heap_mb
        env = {"OPENSEARCH_JAVA_HOME": str(java_home()), "OPENSEARCH_JAVA_OPTS": f"-Xms{heap}m -Xmx{heap}m"}
        if self.clustered:
            env["OPENSEARCH_PATH_CONF"] = str(self.config_dir)
        return env

    def launch(self) -> Launch:
        return Launch(argv=[str(self.install_dir / "bin" / "opensearch")], cwd=self.install_dir,
                      env=self._env(), user=service_user())

    def probe(self) -> str:
        url = f"http://{self.host}:{self.ports[0]}"
        health = http_json(f"{url}/_cluster/health")
        if health["status"] not in ("green", "yellow"):
            raise ServiceError(f"cluster status {health['status']}")
        if health["number_of_nodes"] < self.settings.opensearch.nodes:
            raise ServiceError(f"{health['number_of_nodes']} of {self.settings.opensearch.nodes} nodes joined")
        plugins = {p["component"]: p["version"] for p in http_json(f"{url}/_cat/plugins?format=json")}
        if KNN_PLUGIN not in plugins:
            raise ServiceError(f"plugin {KNN_PLUGIN} not loaded (plugins: {sorted(plugins) or 'none'})")
        nodes = f", {health['number_of_nodes']} nodes" if self.clustered else ""
        return f"cluster {health['status']}{nodes}, {KNN_PLUGIN} {plugins[KNN_PLUGIN]}"
