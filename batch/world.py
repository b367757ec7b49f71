"""Write the synthetic world into the lake: one atomic replace per table, stamped with the run."""

from __future__ import annotations

import itertools
import logging
import time

from tqdm import tqdm

from hybridrec.synthetic import generate_world
from hybridrec.config import SyntheticSettings
from hybridrec.lake import Lake
from hybridrec.runinfo import RunContext

log = logging.getLogger(__name__)


def write_world(lake: Lake, cfg: SyntheticSettings, run: RunContext) -> dict[str, int]:
    """Generate the world for ``cfg`` and replace its tables; re-running with the same seed is a no-op in content.
    Its users carry the experiment arms of the lake's settings (``serving.experiments``)."""
    started = time.perf_counter()
    counts: dict[str, int] = {}
    chunks = tqdm(generate_world(cfg, lake.settings.serving), desc="synthetic world", unit="chunk", leave=False)
    for spec, batches in itertools.groupby(chunks, key=lambda pair: pair[0]):
        name = spec.qualified_name
        counts[name] = lake.replace(spec, (table for _, table in batches), run)
    seconds = time.perf_counter() - started
    log.info("synthetic world (seed %d): %d rows in %d tables in %.1fs", cfg.seed, sum(counts.values()), len(counts), seconds)
    return counts
