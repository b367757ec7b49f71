"""OpenSearch 2.x single node with the k-NN plugin, from the integ-test zip on Maven Central.

That zip is the minimal distribution: no bundled JDK, and of the modules only transport-netty4.
The k-NN plugin extends lang-painless, so the painless module is assembled from its Maven jars
(see ``_install_painless``). The k-NN zip carries no native libraries: vector fields use the
``lucene`` engine. OpenSearch refuses to run as root, so as root it runs as a system user.
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


class OpenSearchService(ProcessService):
    name = "opensearch"
    health_timeout_s = 180.0

    @property
    def host(self) -> str:
        return self.settings.opensearch.host

    @property
    def ports(self) -> list[int]:
        return [self.settings.opensearch.port, self.settings.opensearch.transport_port]

    @property
    def install_dir(self) -> Path:
        return self.root / f"opensearch-{self.settings.opensearch.version}"

    @property
    def server_logs_dir(self) -> Path:
        """OpenSearch's own log files (its stdout goes to ``log_file`` as for every service)."""
        return self.logs_dir / "opensearch-server"

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
        (self.install_dir / "config" / "opensearch.yml").write_text(render_template(
            "opensearch.yml", host=cfg.host, http_port=cfg.port, transport_port=cfg.transport_port,
            data_dir=self.data_dir, logs_dir=self.server_logs_dir))
        for folder in (self.data_dir, self.server_logs_dir):
            if not folder.exists():
                folder.mkdir(parents=True)
                if user is not None:
                    chown_tree(folder, user)

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
        return {"OPENSEARCH_JAVA_HOME": str(java_home()), "OPENSEARCH_JAVA_OPTS": f"-Xms{heap}m -Xmx{heap}m"}

    def launch(self) -> Launch:
        return Launch(argv=[str(self.install_dir / "bin" / "opensearch")], cwd=self.install_dir,
                      env=self._env(), user=service_user())

    def probe(self) -> str:
        url = self.settings.opensearch.url
        health = http_json(f"{url}/_cluster/health")
        if health["status"] not in ("green", "yellow"):
            raise ServiceError(f"cluster status {health['status']}")
        plugins = {p["component"]: p["version"] for p in http_json(f"{url}/_cat/plugins?format=json")}
        if KNN_PLUGIN not in plugins:
            raise ServiceError(f"plugin {KNN_PLUGIN} not loaded (plugins: {sorted(plugins) or 'none'})")
        return f"cluster {health['status']}, {KNN_PLUGIN} {plugins[KNN_PLUGIN]}"
