import math

import pandas as pd
import pytest

import numpy as np

from hybridrec.models.ranking_metrics import list_metrics, paired_bootstrap, user_metrics


def test_recall_ndcg_coverage_by_hand():
    recommended = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b"], "item_id": ["x", "y", "z", "x", "w"],
                                "rank": [1, 2, 3, 1, 2]})
    relevant = pd.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["y", "q", "w", "x"]})
    popularity = pd.Series({"x": 6, "y": 2, "z": 1, "w": 1})
    m = list_metrics(recommended, relevant, k=2, item_popularity=popularity, n_items=10)
    # a: 1 of 2 relevant at rank 2; b: 1 of 1 at rank 2; c: no list.
    assert m["recall@2"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    idcg_a = 1 + 1 / math.log2(3)
    assert m["ndcg@2"] == pytest.approx(((1 / math.log2(3)) / idcg_a + (1 / math.log2(3)) / 1 + 0) / 3)
    assert m["coverage@2"] == pytest.approx(3 / 10) and m["users"] == 3
    assert m["novelty@2"] > 0


def test_no_relevant_users_gives_nan_not_error():
    empty = pd.DataFrame({"user_id": [], "item_id": []})
    m = list_metrics(pd.DataFrame({"user_id": [], "item_id": [], "rank": []}), empty, 20, pd.Series(dtype=float), 5)
    assert m["users"] == 0 and math.isnan(m["ndcg@20"])


def test_user_metrics_are_the_values_list_metrics_averages():
    recommended = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "w"], "rank": [1, 2, 1]})
    relevant = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["y", "w", "x"]})
    per_user = user_metrics(recommended, relevant, k=2)
    assert list(per_user.index) == ["a", "b", "c"]
    assert per_user["recall@2"].tolist() == [1.0, 1.0, 0.0]
    assert per_user.loc["a", "ndcg@2"] == pytest.approx(1 / math.log2(3)) and per_user.loc["b", "ndcg@2"] == 1.0
    m = list_metrics(recommended, relevant, 2, pd.Series({"x": 1, "y": 1, "w": 1}), 3)
    assert m["ndcg@2"] == pytest.approx(per_user["ndcg@2"].mean())


def test_paired_bootstrap_interval_covers_a_known_difference():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 2000)  # large between-user spread, which the pairing must cancel
    better = base + 0.05 + rng.normal(0, 0.02, 2000)
    found = paired_bootstrap(better, base, samples=500, seed=3)
    assert found["low"] < 0.05 < found["high"] and found["low"] > 0.04 and found["high"] < 0.06
    assert found["mean"] == pytest.approx(np.mean(better - base))
    assert paired_bootstrap(better, base, samples=500, seed=3) == found  # seeded: reproducible
    same = paired_bootstrap(base, base, samples=200)
    assert same == {"mean": 0.0, "low": 0.0, "high": 0.0}


def test_paired_bootstrap_refuses_unpaired_input():
    with pytest.raises(ValueError):
        paired_bootstrap(np.zeros(3), np.zeros(2))
