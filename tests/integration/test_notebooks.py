"""Analyst notebooks run in a real Jupyter kernel (nbclient) against a small world that went through
extraction and one retrain, and their outputs say what an analyst would look for."""


import nbformat
import pytest
from nbclient import NotebookClient

from hybridrec.batch.extract import extract_job
from hybridrec.batch.jobs import generate_world_job
from hybridrec.batch.retrain import retrain_job
from hybridrec.config import PROJECT_ROOT, load_settings
from tests.integration.conftest import delete_test_indices, small_world_environ

pytestmark = pytest.mark.integration

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOK_WORLD = {"SYNTHETIC__N_USERS": "400", "SYNTHETIC__N_PLACES": "150", "SYNTHETIC__N_CLIPS": "400",
                  "SYNTHETIC__N_EVENTS": "40000", "SYNTHETIC__N_DAYS": "14", "RETRAIN__GRAPH_FILTER__IDEAL_RANK": "16"}


@pytest.fixture(scope="module")
def world(services, tmp_path_factory):
    """The kernel inherits this process's environment: point it at a small world, extracted and retrained."""
    environ = small_world_environ(tmp_path_factory.mktemp("notebooks"), NOTEBOOK_WORLD)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environ.items():
            patch.setenv(key, value)
        settings = load_settings()
        generate_world_job(settings)
        extract_job(settings)
        retrain_job(settings)
        yield settings
    delete_test_indices(settings)


def executed(name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()  # raises on any cell's error
    return notebook


def outputs(notebook: nbformat.NotebookNode, mime: str) -> list[str]:
    """Every output of that MIME type (``stdout`` for printed text, warnings on stderr left out), in cell order."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if mime == "stdout" and output.output_type == "stream" and output.name == "stdout":
                found.append(output.text)
            elif mime in output.get("data", {}):
                found.append(output.data[mime])
    return found


def test_the_lake_tour_counts_tables_plots_events_and_queries_spark(world):
    notebook = executed("01_lake_tour.ipynb")
    texts = outputs(notebook, "text/plain")
    assert "'raw.events'" in texts[0] and "'derived.item_keywords'" in texts[0]  # counts of every table, extraction's too
    assert any("hybridrec.run-id" in t for t in texts)
    assert outputs(notebook, "image/png"), "no figure of events per day"
    tables = outputs(notebook, "text/html")
    assert len(tables) >= 2 and all("<td>" in t for t in tables), "the Spark queries returned empty tables"


def test_the_retrain_notebook_shows_runs_metrics_keywords_and_a_feed_with_reasons(world):
    notebook = executed("02_retrain_runs.ipynb")
    tables = outputs(notebook, "text/html")
    assert len(tables) >= 4 and all("<td>" in t for t in tables)  # runs, metrics, keywords, ranked candidates
    assert not any("no keyword table yet" in t for t in outputs(notebook, "text/plain"))
    assert outputs(notebook, "image/png"), "no plot of the runs' metrics"
    printed = "".join(outputs(notebook, "stdout"))
    lines = [line for line in printed.splitlines() if line.strip()]
    assert "clip feed for" in lines[0] and "DEGRADED" not in lines[0]
    items = [line for line in lines[2:] if line.strip()[:2].strip().rstrip(".").isdigit()]
    assert len(items) == 5 and all(len(line.split()) >= 3 for line in items)  # each item with its reason
