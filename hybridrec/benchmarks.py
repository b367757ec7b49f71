"""Benchmark results: every benchmark prints its figures and writes them to one JSON file.

Files live in ``benchmarks/results/<benchmark>.json`` (or ``<benchmark>-<dataset>.json``) with the
metrics as top-level keys plus how, where and when they were measured, so a committed result can
be compared with a later run.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hybridrec.config import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"


def machine_description() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.system()} {platform.machine()}, CPU only"


def write_result(file_stem: str, benchmark: str, dataset: str, command: str, metrics: dict[str, Any]) -> Path:
    """Write ``metrics`` with provenance to ``benchmarks/results/<file_stem>.json``; returns the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": benchmark,
        "dataset": dataset,
        "command": command,
        "machine": machine_description(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **metrics,
    }
    path = RESULTS_DIR / f"{file_stem}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path
