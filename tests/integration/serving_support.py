"""A real ``hybridrec serve`` for integration tests: its own free port, its log kept, stopped cleanly."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(env: dict[str, str], log_path: Path, timeout_s: float = 90) -> Iterator[tuple[str, subprocess.Popen]]:
    """``hybridrec serve`` with ``env`` (its port from ``HYBRIDREC__SERVING__PORT``), once ``/healthz``
    answers; yields its URL and process. Terminated afterwards; the caller may check its exit code."""
    url = f"http://127.0.0.1:{env['HYBRIDREC__SERVING__PORT']}"
    with log_path.open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "hybridrec.cli", "serve"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert server.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"hybridrec serve did not answer /healthz within {timeout_s} s"
            time.sleep(0.5)
        yield url, server
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=30)
