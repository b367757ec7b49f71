"""Analyst notebooks run top to bottom (headless, cell by cell) against a small world and one retrain."""

import json
from pathlib import Path

import pytest

from hybridrec.batch.jobs import generate_world_job
from hybridrec.batch.retrain import retrain_job
from hybridrec.config import PROJECT_ROOT, load_settings
from tests.integration.conftest import delete_test_indices, small_world_environ

pytestmark = pytest.mark.integration

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
NOTEBOOK_WORLD = {"SYNTHETIC__N_USERS": "400", "SYNTHETIC__N_PLACES": "150", "SYNTHETIC__N_CLIPS": "400",
                  "SYNTHETIC__N_EVENTS": "40000", "SYNTHETIC__N_DAYS": "14", "RETRAIN__GRAPH_FILTER__IDEAL_RANK": "16"}


@pytest.fixture(scope="module")
def world(services, tmp_path_factory):
    """The notebooks read settings from the environment: point it at a small world with one retrain."""
    environ = small_world_environ(tmp_path_factory.mktemp("notebooks"), NOTEBOOK_WORLD)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environ.items():
            patch.setenv(key, value)
        settings = load_settings()
        generate_world_job(settings)
        retrain_job(settings)
        yield settings
    delete_test_indices(settings)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(notebook: Path, world):
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {}
    try:
        for index, cell in enumerate(cells):
            exec(compile("".join(cell["source"]), f"{notebook.name}[cell {index}]", "exec"), namespace)
    finally:
        if "spark" in namespace:
            namespace["spark"].stop()
    assert namespace["settings"].lake.uri == world.lake.uri
