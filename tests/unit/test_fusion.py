import numpy as np
import pandas as pd

from hybridrec.models.fusion import RRF_K, rrf_ranks


def test_rrf_of_identical_lists_is_that_list():
    order = [3, 1, 4, 2]
    frame = pd.DataFrame({"user_id": "u", "item_id": list("abcd"), "a_rank": order, "b_rank": order})
    assert rrf_ranks(frame, ["a_rank", "b_rank"]).tolist() == order


def test_rrf_rewards_agreement_and_ignores_missing_sources():
    # x: 1st and 3rd; y: 2nd and 2nd; z: only 1st in b; per user independently
    frame = pd.DataFrame({"user_id": ["u", "u", "u", "v", "v"], "item_id": ["x", "y", "z", "x", "y"],
                          "a_rank": [1, 2, np.nan, np.nan, 1], "b_rank": [3, 2, 1, 1, np.nan]})
    assert 1 / (RRF_K + 1) + 1 / (RRF_K + 3) > 2 / (RRF_K + 2)
    assert rrf_ranks(frame, ["a_rank", "b_rank"]).tolist() == [1, 2, 3, 1, 2]
