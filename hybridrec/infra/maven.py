"""Fetch JVM artefacts with Maven as it is configured on the machine, into the project cache.

Everything the project runs on the JVM (Kafka broker jars, the OpenSearch zip and its k-NN plugin,
Spark's Iceberg runtime and JDBC drivers) comes through here, so there is one place that knows
how artefacts are resolved and one cache folder that makes the second `infra up` fast.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class ArtifactError(RuntimeError):
    """An artefact could not be fetched; the message says which and where the log is."""


@dataclass(frozen=True)
class Artifact:
    group: str
    name: str
    version: str
    packaging: str = "jar"

    @property
    def coords(self) -> str:
        return f"{self.group}:{self.name}:{self.version}:{self.packaging}"

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}.{self.packaging}"


def _mvn() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ArtifactError("Maven (mvn) is not on PATH; install it (Debian package 'maven')")
    return mvn


def _run_mvn(args: list[str], log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as out:
        result = subprocess.run([_mvn(), "-B", *args], stdout=out, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise ArtifactError(f"mvn {' '.join(args[:2])} failed (exit {result.returncode}); see {log_file}")


def fetch(artifact: Artifact, dest_dir: Path, log_file: Path) -> Path:
    """Copy one artefact (no dependencies) into ``dest_dir``; cached if already there."""
    target = dest_dir / artifact.file_name
    if target.exists():
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s with Maven", artifact.coords)
    _run_mvn(["dependency:copy", f"-Dartifact={artifact.coords}", f"-DoutputDirectory={dest_dir}",
              "-Dmdep.overWriteReleases=false"], log_file)
    if not target.exists():
        raise ArtifactError(f"Maven reported success but {target} is missing; see {log_file}")
    return target


def fetch_with_dependencies(artifacts: list[Artifact], dest_dir: Path, log_file: Path) -> list[Path]:
    """Copy jars and their runtime dependencies into ``dest_dir`` (a classpath folder).

    Resolution goes through a throwaway POM so Maven's own dependency mediation picks one version
    of each library. A marker file records what was resolved, so a warm cache skips Maven.
    """
    marker = dest_dir / ".resolved"
    wanted = "\n".join(sorted(a.coords for a in artifacts))
    if marker.exists() and marker.read_text() == wanted:
        return sorted(dest_dir.glob("*.jar"))
    deps = "".join(
        f"<dependency><groupId>{a.group}</groupId><artifactId>{a.name}</artifactId>"
        f"<version>{a.version}</version></dependency>"
        for a in artifacts
    )
    pom = (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>hybridrec</groupId><artifactId>classpath</artifactId><version>0</version>"
        f"<dependencies>{deps}</dependencies></project>"
    )
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest_dir.parent))
    try:
        (staging / "pom.xml").write_text(pom)
        log.info("resolving %d artefact(s) and their dependencies with Maven", len(artifacts))
        _run_mvn(["-f", str(staging / "pom.xml"), "dependency:copy-dependencies", "-DincludeScope=runtime",
                  f"-DoutputDirectory={staging / 'jars'}"], log_file)
        if dest_dir.exists():
            shutil.rmtree(dest_dir)
        (staging / "jars").rename(dest_dir)
        marker.write_text(wanted)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(dest_dir.glob("*.jar"))
