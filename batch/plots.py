"""Plots a person looks at after a retrain: this run's models side by side, and metrics across runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure


def plot_run_evaluation(evaluation: pd.DataFrame, path: Path, k: int) -> Path:
    """Bar chart of NDCG@K and Recall@K per model and surface, over all held-out users."""
    overall = evaluation[evaluation["segment"] == "all"]
    surfaces = sorted(overall["surface"].unique())
    # a Figure of its own, drawn by Agg when saved: no pyplot state, no backend switch for whoever imports this
    fig = Figure(figsize=(6 * len(surfaces), 4))
    axes = fig.subplots(1, len(surfaces), squeeze=False)
    for ax, surface in zip(axes[0], surfaces):
        table = overall[overall["surface"] == surface].pivot(index="model", columns="metric", values="value")
        table = table[[f"ndcg@{k}", f"recall@{k}"]].sort_values(f"ndcg@{k}")
        table.plot.barh(ax=ax)
        ax.set_title(f"{surface}: held-out users")
        ax.set_xlabel("value")
    run_id = evaluation["run_id"].iloc[0]
    fig.suptitle(f"retrain {run_id}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_runs(evaluation: pd.DataFrame, metric: str, path: Path | None = None):
    """``metric`` of the ranker and the popularity baseline across runs, per surface (for notebooks: pyplot
    with the notebook's own backend, so the kernel shows it)."""
    chosen = evaluation[(evaluation["segment"] == "all") & (evaluation["metric"] == metric)
                        & evaluation["model"].isin(["ranker", "popularity"])]
    table = chosen.pivot_table(index="run_id", columns=["surface", "model"], values="value").sort_index()
    ax = table.plot(marker="o", figsize=(9, 3.5), title=f"{metric} across runs")
    ax.set_xlabel("run")
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=110)
    return ax
