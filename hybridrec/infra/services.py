"""What every locally run service has in common: its folders, pid file, log, start, health and stop.

Services run as detached processes that outlive the command that started them, so the only link
between `infra up` and a later `infra status`/`down` is a pid file under ``home/services/run``.
A pid is trusted only while the process it names still carries the service's install folder on
its command line, so a recycled pid or a process we did not start is never signalled.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Protocol

from hybridrec.config import Settings
from hybridrec.infra.maven import ArtifactError

log = logging.getLogger(__name__)

SERVICE_USER = "hybridrec"
LOG_TAIL_LINES = 40


class ServiceError(RuntimeError):
    """A service could not be installed, started or checked; the message says what and where the log is."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: int | None
    running: bool
    healthy: bool
    pid: int | None
    detail: str
    log: Path


class Service(Protocol):
    """Anything `infra up/status/down` manages: a daemon, or an install with no process at all."""

    name: str

    def up(self) -> ServiceStatus: ...

    def status(self) -> ServiceStatus: ...

    def down(self) -> ServiceStatus: ...


@dataclass(frozen=True)
class Launch:
    """How to start a service process: argv, extra environment, working folder, OS user."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    user: str | None = None


def services_root(settings: Settings) -> Path:
    return settings.home_path / "services"


@contextmanager
def services_lock(settings: Settings) -> Iterator[None]:
    """Serialise `up`/`down` calls so two shells cannot start the same service twice."""
    root = services_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def render_template(name: str, **values: object) -> str:
    """Fill ``templates/<name>`` (``$key`` placeholders); a missing value is an error, not a blank."""
    text = (resources.files("hybridrec.infra") / "templates" / name).read_text()
    return Template(text).substitute({key: str(value) for key, value in values.items()})


def require_loopback(host: str) -> None:
    """Services are unauthenticated dev instances: refuse to bind them anywhere but loopback."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ServiceError(f"refusing to bind to {host!r}: local services listen on loopback only (e.g. 127.0.0.1)")


def port_in_use(host: str, port: int) -> bool:
    """True if something already holds ``host:port`` (binding is what the service itself will try)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def port_accepts(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if a TCP connection to ``host:port`` succeeds: a cheap check before a client's noisy retries."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def java_home() -> Path:
    """The JDK every service runs on: ``$JAVA_HOME`` if set, else the ``java`` found on PATH."""
    env_home = os.environ.get("JAVA_HOME")
    if env_home and (Path(env_home) / "bin" / "java").exists():
        return Path(env_home)
    java = shutil.which("java")
    if java is None:
        raise ServiceError("java not found (no $JAVA_HOME, nothing on PATH); install a JDK 17, "
                           "e.g. Debian package 'openjdk-17-jre-headless'")
    return Path(java).resolve().parent.parent


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True until the process has fully exited (a zombie or dead entry no longer holds ports or files)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def process_has_marker(pid: int, marker: str) -> bool:
    """True if ``pid`` is alive and ``marker`` appears on its command line (so it is the process we started)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return marker in cmdline and pid_alive(pid)


def spawn_detached(launch: Launch, log_file: Path) -> int:
    """Start ``launch`` in its own session, output appended to ``log_file``, and return its pid.

    A throwaway shell starts it in the background and exits, so the service is re-parented to init:
    it survives the calling command and never lingers as that command's zombie.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    user_args = {}
    if launch.user is not None:
        entry = pwd.getpwnam(launch.user)
        user_args = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    with log_file.open("ab") as out:
        # The shell's stdout is the log (inherited by the service); its stderr carries back the pid.
        result = subprocess.run(
            ["/bin/sh", "-c", '"$@" </dev/null 2>&1 & echo $! >&2', "sh", *launch.argv],
            cwd=launch.cwd, env={**os.environ, **launch.env}, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.PIPE, text=True, start_new_session=True, **user_args,
        )
    if result.returncode != 0 or not result.stderr.strip().isdigit():
        raise ServiceError(f"could not launch {launch.argv[0]}: {result.stderr.strip()}")
    return int(result.stderr.strip())


def stop_pid(pid: int, timeout_s: float, first: signal.Signals = signal.SIGTERM) -> None:
    """``first`` (SIGTERM: the services shut down cleanly on it), then SIGKILL if still there after ``timeout_s``.

    Callers check the pid is theirs first (:func:`process_has_marker`); this waits for the full
    exit, since a process whose command line has vanished may still hold its ports for a moment.
    """
    for sig, wait_s in ((first, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.2)
        if sig == first:
            log.warning("pid %d still running %.0fs after %s; sending SIGKILL", pid, timeout_s, first.name)
    raise ServiceError(f"pid {pid} survived SIGKILL")


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def service_user() -> str | None:
    """The OS user a service that refuses root runs as: ourselves, or a dedicated one if we are root.

    The system account is created on first use (``useradd --system``), no home, no login shell.
    """
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        log.info("running as root: creating system user '%s' to run services that refuse root", SERVICE_USER)
        result = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                                 "--shell", "/usr/sbin/nologin", SERVICE_USER], capture_output=True, text=True)
        if result.returncode != 0:
            raise ServiceError(f"useradd {SERVICE_USER} failed: {result.stderr.strip()}")
    return SERVICE_USER


def require_reachable_by_others(path: Path) -> None:
    """A service run as another user needs search permission on every folder above its files."""
    for folder in (path, *path.parents):
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            raise ServiceError(f"{folder} is not searchable by other users, so the '{SERVICE_USER}' user cannot "
                               f"reach {path}; run `chmod o+x {folder}` or point HYBRIDREC__HOME elsewhere")


def chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent, dirs, files in os.walk(path):
        for child in (*dirs, *files):
            os.chown(os.path.join(parent, child), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


class ProcessService(ABC):
    """A long-running JVM service: install once, start detached, wait until healthy, stop by pid.

    Subclasses say how to install, how to launch and how to probe health; this class owns the
    life cycle, so `up` is idempotent and `down` only ever stops what `up` started.
    """

    name: str
    health_timeout_s: float = 120.0
    stop_timeout_s: float = 30.0
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = services_root(settings)
        self.cache_dir = self.root / "cache"
        self.data_dir = self.root / "data" / self.name
        self.logs_dir = self.root / "logs"
        self.log_file = self.logs_dir / f"{self.name}.log"
        self.install_log = self.logs_dir / f"{self.name}-install.log"
        self.pid_file = self.root / "run" / f"{self.name}.pid"
        self._started_pid: int | None = None

    @property
    @abstractmethod
    def host(self) -> str: ...

    @property
    @abstractmethod
    def ports(self) -> list[int]:
        """Every port the service binds; the first is the one clients use."""

    @property
    @abstractmethod
    def install_dir(self) -> Path:
        """Where the service is unpacked; also the marker that identifies its process."""

    @property
    def marker(self) -> str:
        """What the service's command line carries and no other process's does (see :func:`process_has_marker`)."""
        return str(self.install_dir)

    @abstractmethod
    def install(self) -> None:
        """Fetch, unpack and configure; cheap when already done, since every start calls it."""

    @abstractmethod
    def launch(self) -> Launch: ...

    @abstractmethod
    def probe(self) -> str:
        """Return a one-line health summary, or raise if the service is not (yet) healthy."""

    def on_healthy(self) -> None:
        """Hook run after every successful `up` (e.g. create topics), whether started now or before."""

    def _own_pid(self) -> int | None:
        pid = read_pid(self.pid_file)
        if pid is None:
            return None
        # A process this object spawned is ours while it lives, marker or not: mid-exec (a launcher
        # script exec'ing its server) its command line is briefly empty, and taking that for "not running"
        # started a second PostgreSQL beside the first ('lock file "postmaster.pid" is empty').
        if (pid == self._started_pid and pid_alive(pid)) or process_has_marker(pid, self.marker):
            return pid
        return None

    def _status(self, pid: int | None, healthy: bool, detail: str) -> ServiceStatus:
        return ServiceStatus(self.name, self.ports[0], pid is not None, healthy, pid, detail, self.log_file)

    def status(self) -> ServiceStatus:
        pid = self._own_pid()
        if pid is None:
            busy = [port for port in self.ports if port_in_use(self.host, port)]
            if busy:
                detail = f"not started by hybridrec, but port(s) {busy} are in use by another process"
            elif self.pid_file.exists():
                detail = "stopped (stale pid file)"
            else:
                detail = "stopped"
            return self._status(None, False, detail)
        try:
            return self._status(pid, True, self._probe())
        except Exception as err:  # any probe failure means "not healthy", reported as such
            return self._status(pid, False, f"running but not healthy: {err}")

    def start(self) -> int:
        """Install and launch unless already running; return the pid without waiting for health.

        `infra up` starts every node of a cluster before waiting on any: a quorum forms only once a
        majority of its nodes runs.
        """
        require_loopback(self.host)
        pid = self._own_pid()
        if pid is not None:
            if pid != self._started_pid:  # said once, not again when `up` follows this call's own start
                log.info("%s already running (pid %d)", self.name, pid)
            self._started_pid = pid
            return pid
        self._check_ports_free()
        java_home()  # fail on a missing JDK before downloading anything
        try:
            self.install()
        except ArtifactError as err:
            raise ServiceError(f"{self.name}: download failed: {err}") from err
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a") as out:
            out.write(f"\n==== hybridrec: starting {self.name} at {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n")
        pid = spawn_detached(self.launch(), self.log_file)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")
        self._started_pid = pid
        log.info("started %s (pid %d) on %s:%s; waiting for health (log: %s)",
                 self.name, pid, self.host, self.ports[0], self.log_file)
        return pid

    def up(self) -> ServiceStatus:
        pid = self.start()
        self._wait_healthy(pid)
        self.on_healthy()
        # Probed again with the same patience: a node of a freshly formed cluster may drop out for a moment
        # while its controllers settle (a Kafka broker fenced for a missed heartbeat re-registers).
        detail = self._wait_healthy(pid)
        log.info("%s healthy: %s", self.name, detail)
        return self._status(pid, True, detail)

    def down(self) -> ServiceStatus:
        pid = self._own_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return self.status()
        log.info("stopping %s (pid %d)", self.name, pid)
        stop_pid(pid, self.stop_timeout_s, self.stop_signal)
        self.pid_file.unlink(missing_ok=True)
        self._started_pid = None
        self._wait_ports_released()
        return self._status(None, False, "stopped")

    def _wait_ports_released(self, timeout_s: float = 5.0) -> None:
        """After the process exits the kernel may hold its ports a moment longer; a `status` or `up`
        straight after `down` should not mistake that for another process's listener."""
        deadline = time.monotonic() + timeout_s
        while True:
            busy = [port for port in self.ports if port_in_use(self.host, port)]
            if not busy:
                return
            if time.monotonic() >= deadline:
                log.warning("%s stopped, but port(s) %s are still taken after %.0fs", self.name, busy, timeout_s)
                return
            time.sleep(0.2)

    def _check_ports_free(self) -> None:
        for port in self.ports:
            if port_in_use(self.host, port):
                raise ServiceError(
                    f"{self.name}: port {self.host}:{port} is already taken by a process hybridrec did not start "
                    f"(see `ss -ltnp 'sport = :{port}'`); stop it or change the port in the config")

    def _probe(self) -> str:
        if not port_accepts(self.host, self.ports[0]):
            raise ServiceError(f"port {self.ports[0]} not accepting connections")
        return self.probe()

    def _wait_healthy(self, pid: int) -> str:
        """The probe's detail once it passes; raises after ``health_timeout_s`` of failures."""
        deadline = time.monotonic() + self.health_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            # Liveness, not the command-line marker: while a launcher script execs the JVM, its
            # /proc cmdline is briefly empty, and that is not an exit.
            if not pid_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                self._started_pid = None
                raise ServiceError(f"{self.name} (pid {pid}) exited during start-up; log {self.log_file}:\n"
                                   f"{tail(self.log_file)}")
            try:
                return self._probe()
            except Exception as err:  # not up yet: keep polling until the deadline
                last_error = err
            time.sleep(0.5)
        raise ServiceError(f"{self.name} (pid {pid}) not healthy after {self.health_timeout_s:.0f}s "
                           f"(last error: {last_error}); log {self.log_file}:\n{tail(self.log_file)}")
