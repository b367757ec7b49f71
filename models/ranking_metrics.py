"""Top-K list metrics for recommendation lists given as frames (user_id, item_id, rank).

Recall@K and NDCG@K (binary relevance, ideal DCG over min(|relevant|, K)) as in the LightGCN
protocol, plus catalogue coverage and novelty (mean self-information of recommended items), so
every candidate source, the popularity baseline and the ranker are scored by one function; a paired
bootstrap over users gives the interval of one list's gain over another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def user_metrics(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int) -> pd.DataFrame:
    """Recall@K and NDCG@K per user of ``relevant`` (index: user_id, in order of first appearance);
    a user with no list scores zero. The per-user values :func:`list_metrics` averages, kept apart so
    paired comparisons (:func:`paired_bootstrap`) resample users, the unit of the evaluation."""
    users = relevant["user_id"].unique()
    top = recommended[(recommended["rank"] <= k) & recommended["user_id"].isin(users)]
    hits = top.merge(relevant[["user_id", "item_id"]].drop_duplicates(), on=["user_id", "item_id"])
    n_relevant = relevant.groupby("user_id")["item_id"].nunique().reindex(users)
    hit_count = hits.groupby("user_id").size().reindex(users, fill_value=0)
    dcg = (1.0 / np.log2(hits["rank"] + 1)).groupby(hits["user_id"]).sum().reindex(users, fill_value=0.0)
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    idcg = discounts[np.minimum(n_relevant.to_numpy(), k) - 1] if len(users) else np.zeros(0)
    return pd.DataFrame({f"recall@{k}": (hit_count / n_relevant).to_numpy(float),
                         f"ndcg@{k}": dcg.to_numpy(float) / idcg}, index=pd.Index(users, name="user_id"))


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
    per_user = user_metrics(recommended, relevant, k)
    top = recommended[(recommended["rank"] <= k) & recommended["user_id"].isin(users)]
    share = (item_popularity / max(item_popularity.sum(), 1)).reindex(top["item_id"]).fillna(0).to_numpy()
    novelty = float(np.mean(-np.log2(np.maximum(share, 1.0 / max(item_popularity.sum(), 1))))) if len(top) else float("nan")
    return {
        f"recall@{k}": float(per_user[f"recall@{k}"].mean()),
        f"ndcg@{k}": float(per_user[f"ndcg@{k}"].mean()),
        f"coverage@{k}": float(top["item_id"].nunique() / max(n_items, 1)),
        f"novelty@{k}": novelty,
        "users": int(len(users)),
    }


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 1000, level: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` (paired per user) and its percentile bootstrap interval at ``level``: users are
    drawn with replacement ``samples`` times, both systems keep the same draw (the pairing removes the
    between-user variance both share)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if diff.ndim != 1 or len(diff) == 0:
        raise ValueError("paired_bootstrap needs two equally long, non-empty 1-D arrays")
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for start in range(0, samples, 100):  # blocks of draws: memory stays (100 x users)
        n = min(100, samples - start)
        means[start:start + n] = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high)}
