"""Analyst notebooks run top to bottom against a small world in a throwaway lake."""

import json
from pathlib import Path

import pytest

from hybridrec.batch.jobs import generate_world_job
from hybridrec.config import PROJECT_ROOT
from tests.conftest import lake_settings

pytestmark = pytest.mark.integration

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
SMALL_WORLD = {"HYBRIDREC__SYNTHETIC__N_USERS": "300", "HYBRIDREC__SYNTHETIC__N_PLACES": "100",
               "HYBRIDREC__SYNTHETIC__N_CLIPS": "300", "HYBRIDREC__SYNTHETIC__N_EVENTS": "20000"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(notebook: Path, tmp_path, monkeypatch):
    settings = lake_settings(tmp_path / "lake")
    monkeypatch.setenv("HYBRIDREC__LAKE__URI", settings.lake.uri)
    monkeypatch.setenv("HYBRIDREC__LAKE__WAREHOUSE", settings.lake.warehouse)
    for key, value in SMALL_WORLD.items():
        monkeypatch.setenv(key, value)
    from hybridrec.config import load_settings

    generate_world_job(load_settings())
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {}
    try:
        for cell in cells:
            exec(compile("".join(cell["source"]), f"{notebook.name}", "exec"), namespace)
    finally:
        if "spark" in namespace:
            namespace["spark"].stop()
    assert namespace["counts"]["raw.events"] > 0
