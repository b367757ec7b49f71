"""The popular-fallback file: what a retrain publishes and serving answers from when OpenSearch or a model fails.

One module for both sides (batch writes it, serving reads it; serving imports no batch module). Per
surface the file holds the most popular items overall (``all``), per region (``regions``, places),
each region's centre (``centres``: the mean of its places' coordinates) and, per listed item, what a
degraded feed shows: its title (clipped), topic and, for places, region and coordinates::

    {"run_id": "...", "place": {"all": [ids], "regions": {"busan": [ids]}, "centres": {"busan": [lat, lon]},
                                "items": {"p00001": {"title": "...", "topic_path": "...", "region": "busan",
                                                     "lat": 35.1, "lon": 129.0}}},
                      "clip": {"all": [ids], "regions": {}, "centres": {}, "items": {...}}}
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hybridrec.config import Settings

TITLE_CHARS = 80  # a degraded feed shows names, not review-length text
ITEM_FIELDS = ("title", "topic_path", "region", "lat", "lon")


def fallback_path(settings: Settings) -> Path:
    """The last published popular lists, read by serving in degraded mode."""
    return settings.home_path / settings.retrain.models_dir / "popular-fallback.json"


def _value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def surface_lists(popularity: pd.Series, items: pd.DataFrame, size: int) -> dict[str, Any]:
    """The fallback lists of one surface: ``popularity`` by item id, ``items`` with ``item_id`` and any of
    :data:`ITEM_FIELDS` (places: ``region``, ``lat``, ``lon``); at most ``size`` items per list."""
    ranked = popularity.sort_values(ascending=False, kind="stable")
    meta = items.drop_duplicates("item_id").set_index("item_id")
    lists: dict[str, Any] = {"all": ranked.index[:size].tolist(), "regions": {}, "centres": {}}
    if "region" in meta.columns:
        for region, members in meta.groupby("region"):
            lists["regions"][region] = ranked[ranked.index.isin(members.index)].index[:size].tolist()
            if {"lat", "lon"} <= set(members.columns) and members["lat"].notna().any():
                lists["centres"][region] = [round(float(members["lat"].mean()), 6),
                                            round(float(members["lon"].mean()), 6)]
    listed = dict.fromkeys([*lists["all"], *(i for ids in lists["regions"].values() for i in ids)])
    columns = [c for c in ITEM_FIELDS if c in meta.columns]
    lists["items"] = {}
    for item_id in listed:
        if item_id not in meta.index:
            continue
        entry = {c: _value(meta.at[item_id, c]) for c in columns}
        if isinstance(entry.get("title"), str):
            entry["title"] = entry["title"][:TITLE_CHARS]
        lists["items"][item_id] = {k: v for k, v in entry.items() if v is not None}
    return lists


def write_fallback(path: Path, document: dict[str, Any]) -> None:
    """Replace the file atomically, so a serving process never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(document, ensure_ascii=False))
    os.replace(partial, path)
