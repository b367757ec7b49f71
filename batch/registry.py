"""Model registry: an append-only Iceberg log of retrain runs, so any model traces back to its data."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from hybridrec.contract import MODEL_REGISTRY, TableSpec
from hybridrec.lake import Lake
from hybridrec.pipeline import Step, run_steps
from hybridrec.runinfo import RunContext


class Registry:
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
