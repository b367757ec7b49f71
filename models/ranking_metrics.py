"""Top-K list metrics for recommendation lists given as frames (user_id, item_id, rank).

Recall@K and NDCG@K (binary relevance, ideal DCG over min(|relevant|, K)) as in the LightGCN
protocol, plus catalogue coverage and novelty (mean self-information of recommended items), so
every candidate source, the popularity baseline and the ranker are scored by one function.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def list_metrics(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int, item_popularity: pd.Series,
                 n_items: int) -> dict[str, float]:
    """``recommended``: user_id, item_id, rank (1-based); ``relevant``: user_id, item_id.

    Averages over the users of ``relevant`` (a user with no list counts as zero hits).
    ``item_popularity``: interactions per item_id in training, for novelty.
    """
    users = relevant["user_id"].unique()
    if len(users) == 0:
        return {f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan"), f"coverage@{k}": float("nan"),
                f"novelty@{k}": float("nan"), "users": 0}
    top = recommended[(recommended["rank"] <= k) & recommended["user_id"].isin(users)]
    hits = top.merge(relevant[["user_id", "item_id"]].drop_duplicates(), on=["user_id", "item_id"])
    n_relevant = relevant.groupby("user_id")["item_id"].nunique().reindex(users)
    hit_count = hits.groupby("user_id").size().reindex(users, fill_value=0)
    dcg = (1.0 / np.log2(hits["rank"] + 1)).groupby(hits["user_id"]).sum().reindex(users, fill_value=0.0)
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    idcg = discounts[np.minimum(n_relevant.to_numpy(), k) - 1]
    share = (item_popularity / max(item_popularity.sum(), 1)).reindex(top["item_id"]).fillna(0).to_numpy()
    novelty = float(np.mean(-np.log2(np.maximum(share, 1.0 / max(item_popularity.sum(), 1))))) if len(top) else float("nan")
    return {
        f"recall@{k}": float((hit_count / n_relevant).mean()),
        f"ndcg@{k}": float((dcg.to_numpy() / idcg).mean()),
        f"coverage@{k}": float(top["item_id"].nunique() / max(n_items, 1)),
        f"novelty@{k}": novelty,
        "users": int(len(users)),
    }
