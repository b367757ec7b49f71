"""Benchmark results: every benchmark prints its figures and writes them to one JSON file.

Files live in ``<results>/<benchmark>.json`` (or ``<benchmark>-<dataset>.json``) with the metrics as
top-level keys plus how, where and when they were measured, so a committed result can be compared
with a later run. ``<results>`` is :func:`results_dir`: ``benchmarks/results/`` of the checkout when
hybridrec runs from one, ``./benchmark-results/`` when it runs from an installed wheel, or whatever
``$HYBRIDREC_BENCH_RESULTS`` (``hybridrec bench --results-dir``) names.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hybridrec.config import PROJECT_ROOT, Settings, SyntheticSettings

RESULTS_ENV = "HYBRIDREC_BENCH_RESULTS"


def results_dir() -> Path:
    """Where results are written: ``$HYBRIDREC_BENCH_RESULTS``, else the checkout's committed
    ``benchmarks/results/``, else (an installed wheel: no checkout to write into) ``./benchmark-results``."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV]).resolve()
    if (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "benchmarks").is_dir():
        return PROJECT_ROOT / "benchmarks" / "results"
    return Path.cwd() / "benchmark-results"


def positive(kind: type = int):
    """An argparse type for a count or a rate: a bad value is argparse's one-line usage error (exit 2)."""
    def parse(text: str):
        value = kind(text)  # a ValueError reads "invalid int value: 'x'"
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def machine_description() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpus = len(list(Path("/proc/driver/nvidia/gpus").glob("*"))) + len(list(Path("/dev/dri").glob("renderD*")))
    accelerators = f"{gpus} GPU device(s) present (unused)" if gpus else "CPU only"
    return f"{os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.system()} {platform.machine()}, {accelerators}"


def world_identity(cfg: SyntheticSettings) -> str:
    """The synthetic world a benchmark ran on: seed and sizes, and a hash of every generator setting."""
    settings_hash = hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]
    return (f"synthetic seed={cfg.seed} users={cfg.n_users} places={cfg.n_places} clips={cfg.n_clips} "
            f"events={cfg.n_events} days={cfg.n_days} (synthetic settings {settings_hash})")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def code_state() -> dict[str, Any]:
    """The checkout's commit and whether it had uncommitted changes: taken when a long benchmark starts, since
    the checkout may move on before it ends. Results files do not count: a benchmark run after another
    finds the first one's new result not yet committed, and that changes no code."""
    return {"git_commit": _git("rev-parse", "HEAD") or None,
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                   ":(exclude)benchmarks/results"))}


def provenance(settings: Settings | None = None, load_at_start: tuple[float, ...] | None = None,
               code_at_start: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where, when and from what a figure was measured: read at run time, never written as a literal."""
    return {
        **(code_at_start or code_state()),
        "config_hash": settings.config_hash() if settings is not None else None,
        "cpu_model": _cpu_model(),
        "load_average_start": [round(x, 2) for x in load_at_start] if load_at_start else None,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }


def write_result(file_stem: str, benchmark: str, dataset: str, command: str, metrics: dict[str, Any],
                 settings: Settings | None = None, load_at_start: tuple[float, ...] | None = None,
                 code_at_start: dict[str, Any] | None = None) -> Path:
    """Write ``metrics`` with provenance to ``<results_dir()>/<file_stem>.json``; returns the path."""
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": benchmark,
        "dataset": dataset,
        "command": command,
        "machine": machine_description(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance(settings, load_at_start, code_at_start),
        **metrics,
    }
    path = directory / f"{file_stem}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path
