"""The model registry: where every job's runs are logged and where their model files live.

An append-only Iceberg log of runs (``ops.model_registry``), so any model traces back to its data and
config, and the one place that knows a run's folder and file names. Batch jobs record runs here,
streaming loads the distilled query student from here and serving loads the published run's ranker
from here, so none of them imports another's modules to find a model.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from collections.abc import Callable, Sequence
from typing import Any

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from hybridrec.config import Settings
from hybridrec.contract import MODEL_REGISTRY, TableSpec
from hybridrec.pipeline import Step, run_steps
from hybridrec.runinfo import RunContext

if TYPE_CHECKING:  # serving reads model files only: it need not load the Iceberg client
    from hybridrec.lake import Lake
    from hybridrec.models.review_student import ReviewStudent
    from hybridrec.models.student import QueryStudent, TopicClassifier
    from hybridrec.taxonomy import Taxonomy


def run_dir(settings: Settings, run_id: str) -> Path:
    """The folder of a run's model files: ``<home>/<retrain.models_dir>/<run_id>``."""
    return settings.home_path / settings.retrain.models_dir / run_id


def ranker_path(settings: Settings, run_id: str, surface: str) -> Path:
    """The LightGBM ranker a retrain run trained for ``surface``."""
    return run_dir(settings, run_id) / f"ranker-{surface}.txt"


class Registry:
    """Logs one run of a job: its input snapshots, then how it ended."""

    def __init__(self, lake: Lake, run: RunContext):
        self.lake, self.run = lake, run

    def snapshot_ids(self, specs: list[TableSpec]) -> dict[str, int]:
        """Current snapshot id of every input table that exists (absent optional inputs are left out)."""
        ids = {}
        for spec in specs:
            if self.lake.exists(spec):
                snapshot = self.lake.table(spec).current_snapshot()
                if snapshot is not None:
                    ids[spec.qualified_name] = snapshot.snapshot_id
        return ids

    def run_steps(self, steps: Sequence[Step], context: dict[str, Any],
                  outcome: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Run the job's steps and log how it went: ``failed`` with the error, or ``succeeded`` with
        ``outcome(context)`` (model files, metrics, indices). Steps record ``input_snapshots`` first."""
        try:
            run_steps(self.run.job, steps, context)
        except Exception as err:
            self.record("failed", input_snapshots=context.get("input_snapshots", {}), detail=str(err))
            raise
        self.record("succeeded", input_snapshots=context["input_snapshots"], **outcome(context))
        return context

    def record(self, status: str, input_snapshots: dict[str, int], model_files: dict[str, str] | None = None,
               metrics: dict[str, Any] | None = None, indices: dict[str, str] | None = None,
               detail: str | None = None) -> None:
        row = {
            "run_id": [self.run.run_id], "status": [status], "config_hash": [self.run.config_hash],
            "input_snapshots": [json.dumps(input_snapshots, sort_keys=True)],
            "model_files": [json.dumps(model_files) if model_files is not None else None],
            "metrics": [json.dumps(metrics) if metrics is not None else None],
            "indices": [json.dumps(indices) if indices is not None else None],
            "detail": [detail], "recorded_at": [datetime.now(timezone.utc)],
        }
        self.lake.append(MODEL_REGISTRY, [MODEL_REGISTRY.to_arrow(row)], self.run)


def run_history(lake: Lake) -> pd.DataFrame:
    """Latest status of every run, newest first."""
    if not lake.exists(MODEL_REGISTRY):
        return pd.DataFrame(columns=MODEL_REGISTRY.column_names)
    log = lake.scan(MODEL_REGISTRY).to_pandas().sort_values("recorded_at")
    return log.groupby("run_id").tail(1).sort_values("recorded_at", ascending=False).reset_index(drop=True)


def latest_model_files(lake: Lake, job: str, run_id: str | None = None) -> tuple[str, dict[str, str]]:
    """(run id, model files) of ``run_id``, or of the newest run of ``job`` that succeeded."""
    runs = run_history(lake)
    runs = runs[(runs["status"] == "succeeded") & runs["run_id"].str.startswith(f"{job}-")]
    if run_id is not None:
        runs = runs[runs["run_id"] == run_id]
    if runs.empty:
        wanted = f"run {run_id}" if run_id else f"succeeded {job} run"
        raise LookupError(f"no {wanted} in the model registry: run `hybridrec {job}` first")
    row = runs.iloc[0]
    return row["run_id"], json.loads(row["model_files"])


def distilled_files(settings: Settings) -> tuple[str, dict[str, str]]:
    """(run id, files) of the distill run in use: ``distill.student_run`` or the newest that succeeded."""
    from hybridrec.lake import Lake

    return latest_model_files(Lake(settings), "distill", settings.distill.student_run or None)


def load_student(settings: Settings) -> QueryStudent:
    from hybridrec.models.student import QueryStudent

    return QueryStudent.load(Path(distilled_files(settings)[1]["student"]))


def load_review_student(settings: Settings, taxonomy: Taxonomy | None = None) -> ReviewStudent:
    from hybridrec.models.review_student import ReviewStudent
    from hybridrec.taxonomy import load_taxonomy

    return ReviewStudent.load(Path(distilled_files(settings)[1]["review_student"]), taxonomy or load_taxonomy())


def load_topic_classifier(settings: Settings) -> TopicClassifier:
    from hybridrec.models.student import TopicClassifier

    return TopicClassifier.load(Path(distilled_files(settings)[1]["topic_classifier"]))
