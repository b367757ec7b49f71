import math

import pandas as pd
import pytest

from hybridrec.models.ranking_metrics import list_metrics


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
