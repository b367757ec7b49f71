"""Per-key token buckets in a fixed-size table that every worker process of one server shares.

Uvicorn's workers are separate processes, so buckets kept in each would let a key through at
``workers ×`` its budget, and a dict keyed by client would grow without bound. Instead the buckets
live in a table of ``slots`` fixed-size records, memory-mapped from one file that ``hybridrec serve``
creates before the workers start (:func:`shared_table`) and that each worker maps by the path in
``$HYBRIDREC_RATE_LIMIT_TABLE``. A key's bucket is the slot of a hash of the key: memory stays
``slots × 16`` bytes whatever the number of clients, and two keys that share a slot share one
budget, which only makes their limit stricter. Each update of a slot holds an ``fcntl`` lock on
that slot's bytes (other processes) and a thread lock (this process: POSIX locks are per process).
Without a table file (one process, tests, ``hybridrec feed``) the table is anonymous memory.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TABLE_ENV = "HYBRIDREC_RATE_LIMIT_TABLE"  # set by `hybridrec serve` for its workers
SLOT = struct.Struct("=dd")  # tokens used below a full bucket, clock time of the slot's last update


def table_bytes(slots: int) -> int:
    return slots * SLOT.size


class TokenBuckets:
    """``rate`` tokens per second up to ``burst`` per key; one request costs one token.

    A zeroed slot is a full bucket, so a fresh table needs no initialisation. The clock is
    ``time.monotonic``, which on Linux is one clock for every process of the machine."""

    def __init__(self, rate: float, burst: int, slots: int, path: Path | None = None, clock=time.monotonic):
        self.rate, self.burst, self.slots, self.clock = rate, burst, slots, clock
        self._fd: int | None = None
        if path is None:
            self._table = mmap.mmap(-1, table_bytes(slots))
        else:
            self._fd = os.open(path, os.O_RDWR)
            size = os.fstat(self._fd).st_size
            if size != table_bytes(slots):
                os.close(self._fd)
                raise ValueError(f"rate-limit table {path} has {size} bytes, serving.rate_limit_slots={slots} "
                                 f"needs {table_bytes(slots)}: it was made for another configuration")
            self._table = mmap.mmap(self._fd, size)
        self._lock = threading.Lock()

    def slot(self, key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") % self.slots

    @contextmanager
    def _locked(self, offset: int) -> Iterator[None]:
        with self._lock:
            if self._fd is None:
                yield
                return
            fcntl.lockf(self._fd, fcntl.LOCK_EX, SLOT.size, offset)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, SLOT.size, offset)

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds until a token is available."""
        offset = self.slot(key) * SLOT.size
        with self._locked(offset):
            now = self.clock()
            used, at = SLOT.unpack_from(self._table, offset)
            used = max(0.0, used - max(0.0, now - at) * self.rate)
            allowed = used + 1 <= self.burst
            SLOT.pack_into(self._table, offset, used + 1 if allowed else used, now)
        return 0.0 if allowed else (used + 1 - self.burst) / self.rate

    def close(self) -> None:
        self._table.close()
        if self._fd is not None:
            os.close(self._fd)


def create_table(path: Path, slots: int) -> None:
    """A zeroed table file (every bucket full), readable by this user only."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, table_bytes(slots))
    finally:
        os.close(fd)


@contextmanager
def shared_table(slots: int) -> Iterator[Path]:
    """A fresh table for the worker processes started inside the block: its path is exported in
    ``$HYBRIDREC_RATE_LIMIT_TABLE`` (workers inherit the environment) and the file removed after.
    In /dev/shm when there is one: the table is memory, never worth writing to disk."""
    shm = Path("/dev/shm")
    handle, name = tempfile.mkstemp(prefix="hybridrec-rate-limits-", dir=shm if shm.is_dir() else None)
    os.close(handle)
    path = Path(name)
    create_table(path, slots)
    previous = os.environ.get(TABLE_ENV)
    os.environ[TABLE_ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(TABLE_ENV, None)
        else:
            os.environ[TABLE_ENV] = previous
        path.unlink(missing_ok=True)


def table_from_environment() -> Path | None:
    """The table ``hybridrec serve`` made for this worker, if it made one."""
    value = os.environ.get(TABLE_ENV)
    return Path(value) if value else None
