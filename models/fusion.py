"""Reciprocal-rank fusion (Cormack et al. 2009): the unlearned way to merge ranked candidate lists.

``score(item) = sum over lists containing it of 1 / (RRF_K + rank)``. The evaluation scores it on
the same candidate union the ranker sees, so the ranker's gain over it is what learning adds beyond
merging the sources.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RRF_K = 60  # the constant of the original paper; serving's candidate cap uses the same


def rrf_ranks(candidates: pd.DataFrame, rank_columns: list[str], k: int = RRF_K) -> pd.Series:
    """1-based fused rank of each row within its ``user_id``: ``rank_columns`` hold each source's
    1-based rank of the row's item (NaN where the source did not propose it). Ties keep the rows'
    order, so the result is deterministic."""
    ranks = candidates[rank_columns].to_numpy(dtype=float)
    fused = np.where(np.isnan(ranks), 0.0, 1.0 / (k + ranks)).sum(axis=1)
    scores = pd.Series(fused, index=candidates.index)
    return scores.groupby(candidates["user_id"], sort=False).rank(ascending=False, method="first").astype(int)
