"""PostgreSQL for the Iceberg catalog of the cluster topology: Debian's server, its own data folder.

The server binaries are the machine's (Debian's ``postgresql-<version>``) or, where that package is
not installed, the same package fetched with ``apt-get download`` and unpacked into the cache (no
root needed). `infra up` initdb's a data folder under ``home``, starts the server on the loopback
port of ``lake.uri`` with trust authentication (a dev instance, like the other services) and creates
the catalog's database. PostgreSQL refuses to run as root, so as root it runs as the service user.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

from hybridrec.config import Settings
from hybridrec.infra.services import (
    Launch, ProcessService, ServiceError, chown_tree, require_reachable_by_others, service_user, tail,
)

log = logging.getLogger(__name__)

MAINTENANCE_DB = "postgres"


class PostgresService(ProcessService):
    name = "postgres"
    health_timeout_s = 60.0
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for every pooled client to leave

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        uri = urlparse(settings.catalog_uri)
        if not uri.scheme.startswith("postgresql"):
            raise ServiceError(f"postgres: lake.uri must name a PostgreSQL catalog, got {settings.catalog_uri!r}")
        self.user = unquote(uri.username or "postgres")
        self.database = uri.path.lstrip("/") or self.user
        self._host = uri.hostname or "127.0.0.1"
        self._port = uri.port or 5432

    @property
    def host(self) -> str:
        return self._host

    @property
    def ports(self) -> list[int]:
        return [self._port]

    @property
    def version(self) -> int:
        return self.settings.infra.postgres.version

    @property
    def install_dir(self) -> Path:
        """The server binaries' folder: the machine's install, else the package unpacked in the cache."""
        system = Path(f"/usr/lib/postgresql/{self.version}")
        return system if (system / "bin" / "postgres").exists() else self._unpacked_root / system.relative_to("/")

    @property
    def marker(self) -> str:
        return str(self.data_dir)  # the binaries may be the machine's, shared with servers we did not start

    @property
    def _unpacked_root(self) -> Path:
        return self.cache_dir / f"postgresql-{self.version}"

    def install(self) -> None:
        user = service_user()
        if user is not None:
            require_reachable_by_others(self.root)
        if not (self.install_dir / "bin" / "postgres").exists():
            self._unpack_package()
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if user is not None:
            chown_tree(self.data_dir, user)
        log.info("initialising PostgreSQL data folder %s", self.data_dir)
        self._run([str(self.install_dir / "bin" / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                   "-A", "trust", "-E", "UTF8", "--no-locale", "--no-instructions"], user)

    def _unpack_package(self) -> None:
        """``apt-get download`` the server package (and libpq) and ``dpkg -x`` them into the cache."""
        debs = self.cache_dir / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        log.info("fetching Debian's postgresql-%d into %s", self.version, self._unpacked_root)
        self._run(["apt-get", "download", f"postgresql-{self.version}", "libpq5"], None, cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            self._run(["dpkg", "-x", str(deb), str(self._unpacked_root)], None)
        if not (self.install_dir / "bin" / "postgres").exists():
            raise ServiceError(f"postgres: no server binary in {self.install_dir} after unpacking; "
                               f"log {self.install_log}")

    def _run(self, argv: list[str], user: str | None, cwd: Path | None = None) -> None:
        user_args = {}
        if user is not None:
            entry = pwd.getpwnam(user)
            user_args = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        self.install_log.parent.mkdir(parents=True, exist_ok=True)
        with self.install_log.open("a") as out:
            result = subprocess.run(argv, cwd=cwd or self.root, env={**os.environ, **self._env()},
                                    stdout=out, stderr=subprocess.STDOUT, **user_args)
        if result.returncode != 0:
            raise ServiceError(f"postgres: {Path(argv[0]).name} failed (exit {result.returncode}); "
                               f"log {self.install_log}:\n{tail(self.install_log)}")

    def _env(self) -> dict[str, str]:
        libs = self._unpacked_root / "usr" / "lib" / "x86_64-linux-gnu"
        return {"LD_LIBRARY_PATH": str(libs)} if libs.exists() else {}

    def launch(self) -> Launch:
        cfg = self.settings.infra.postgres
        return Launch(
            argv=[str(self.install_dir / "bin" / "postgres"), "-D", str(self.data_dir), "-p", str(self._port),
                  "-c", f"listen_addresses={self._host}", "-c", "unix_socket_directories=",
                  "-c", f"shared_buffers={cfg.shared_buffers_mb}MB", "-c", f"max_connections={cfg.max_connections}"],
            cwd=self.data_dir, env=self._env(), user=service_user())

    def _connect(self, database: str):
        import psycopg2

        return psycopg2.connect(host=self._host, port=self._port, user=self.user, dbname=database, connect_timeout=3)

    def probe(self) -> str:
        connection = self._connect(MAINTENANCE_DB)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW server_version")
                version = cursor.fetchone()[0]
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                exists = cursor.fetchone() is not None
        finally:
            connection.close()
        return f"PostgreSQL {version}, database {self.database} {'ready' if exists else 'missing'}"

    def on_healthy(self) -> None:
        """Create the catalog's database (pyiceberg and Iceberg's JdbcCatalog create their own tables)."""
        connection = self._connect(MAINTENANCE_DB)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cursor.fetchone() is None:
                    log.info("creating database %s", self.database)
                    cursor.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            connection.close()
