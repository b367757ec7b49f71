"""Shared fixtures: settings pointed at a throwaway lake, so tests never touch the quick start's data."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridrec.config import Settings, load_settings


def lake_settings(root: Path) -> Settings:
    """Project settings (services, caches) with the Iceberg catalog and warehouse under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    return load_settings(environ={
        "HYBRIDREC__LAKE__URI": f"sqlite:///{root / 'catalog.db'}",
        "HYBRIDREC__LAKE__WAREHOUSE": (root / "warehouse").as_uri(),
    })


@pytest.fixture
def tmp_lake_settings(tmp_path: Path) -> Settings:
    return lake_settings(tmp_path / "lake")
