"""The retrain benchmark's comparison table on a hand-made held-out frame (no lake, no Spark)."""

import numpy as np
import pandas as pd
import pytest

from hybridrec.bench.retrain import compare_lists
from hybridrec.features.ranking import SOURCES


def _held_out(users: list[str]) -> pd.DataFrame:
    """Three candidates per user: the ranker puts the engaged one ("hit") first, the sources last."""
    rows = []
    for u in users:
        for n, item in enumerate(["a", "b", "hit"]):
            row = {"user_id": u, "item_id": item, "rank": 1 if item == "hit" else n + 2}
            row.update({f"{s}_rank": np.nan for s in SOURCES})
            row["als_rank"], row["popular_rank"] = n + 1, n + 1
            rows.append(row)
    return pd.DataFrame(rows)


def test_compare_lists_scores_every_list_per_segment_with_the_gain_over_rrf():
    users = [f"u{i}" for i in range(40)]
    labels = pd.DataFrame({"user_id": users, "item_id": "hit"})
    segments = {u: ("light" if i % 2 else "heavy") for i, u in enumerate(users)}
    table = compare_lists(_held_out(users), labels, segments, k=2, bootstrap_samples=200)
    assert list(table) == ["all", "light", "heavy"]  # no cold user: no empty row
    overall = table["all"]
    assert overall["users"] == 40 and table["light"]["users"] == 20
    assert set(overall["models"]) == {"ranker", "rrf", "als", "popularity"}
    assert overall["models"]["ranker"]["ndcg@2"] == 1.0 and overall["models"]["rrf"]["recall@2"] == 0.0
    gain = overall["ranker_minus_rrf"]["ndcg@2"]
    assert gain == {"mean": 1.0, "low": 1.0, "high": 1.0}


def test_compare_lists_counts_users_without_candidates_as_misses():
    labels = pd.DataFrame({"user_id": ["u0", "u1"], "item_id": ["hit", "elsewhere"]})
    table = compare_lists(_held_out(["u0", "u1"]), labels, {"u0": "light", "u1": "light"}, 3, 100)
    assert table["all"]["models"]["ranker"]["recall@3"] == pytest.approx(0.5)
    assert table["all"]["ranker_minus_rrf"]["recall@3"]["mean"] == 0.0  # both find u0's hit within 3
