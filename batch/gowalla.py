"""Load the Gowalla check-in benchmark (LightGCN split) into the lake under the data contract.

Each line of ``train.txt``/``test.txt`` is ``user item item ...``. Every (user, item) pair becomes a
``visit`` event on the place surface. The published split is kept as two tables, ``gowalla.events_train``
and ``gowalla.events_test``, so results stay comparable with the papers. The LightGCN files carry
no timestamps, so every event gets the dataset's fixed epoch: order within the split is unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from hybridrec.contract import EVENTS, TableSpec
from hybridrec.lake import Lake
from hybridrec.runinfo import RunContext

log = logging.getLogger(__name__)

NAMESPACE = "gowalla"
SPLITS = {"train": EVENTS.relocated(NAMESPACE, "events_train"), "test": EVENTS.relocated(NAMESPACE, "events_test")}
DATASET_EPOCH = datetime(2010, 10, 1, tzinfo=timezone.utc)


def read_split(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(user, items) per line; lines with a user and no items are kept as users without events."""
    with path.open() as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                yield int(fields[0]), np.asarray(fields[1:], dtype=np.int64)
            except ValueError as err:
                raise ValueError(f"{path}:{line_no}: not 'user item item ...': {err}") from None


def split_batches(path: Path, split: str, rows_per_batch: int = 250_000) -> Iterator[pa.Table]:
    """Contract-shaped event batches of one split file, bounded in memory."""
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    pending = 0
    for user, user_items in read_split(path):
        users.append(np.full(len(user_items), user, dtype=np.int64))
        items.append(user_items)
        pending += len(user_items)
        if pending >= rows_per_batch:
            yield _events_table(np.concatenate(users), np.concatenate(items), split)
            users, items, pending = [], [], 0
    if pending:
        yield _events_table(np.concatenate(users), np.concatenate(items), split)


def _events_table(users: np.ndarray, items: np.ndarray, split: str) -> pa.Table:
    user_ids = np.char.add("gowalla:u", users.astype(str))
    item_ids = np.char.add("gowalla:p", items.astype(str))
    n = len(users)
    return EVENTS.to_arrow({
        "event_id": np.char.add(np.char.add(np.char.add(f"gowalla:{split}:", user_ids), ":"), item_ids).tolist(),
        "user_id": user_ids.tolist(),
        "item_id": item_ids.tolist(),
        "surface": ["place"] * n,
        "event_type": ["visit"] * n,
        "ts": pa.array(np.full(n, DATASET_EPOCH.timestamp() * 1_000_000, dtype=np.int64), pa.timestamp("us", tz="UTC")),
    })


def load_gowalla(lake: Lake, data_dir: Path, run: RunContext) -> dict[str, int]:
    """Replace the Gowalla tables with the files in ``data_dir``; idempotent."""
    counts = {}
    for split, spec in SPLITS.items():
        path = data_dir / f"{split}.txt"
        if not path.exists():
            raise FileNotFoundError(f"Gowalla {split} split not found at {path} (see shared/data/gowalla/PROVENANCE.md)")
        counts[spec.qualified_name] = lake.replace(spec, split_batches(path, split), run)
    return counts


def gowalla_tables() -> tuple[TableSpec, ...]:
    return tuple(SPLITS.values())
