"""All-ranking top-k evaluation, as in the LightGCN / NGCF papers and code.

For every user with at least one test item: score all items, exclude the user's training items,
take the top ``k``; then

* Recall@k = hits / |test items of the user|;
* NDCG@k = DCG / IDCG with binary relevance, ``DCG = sum_{rank r hit} 1 / log2(r + 2)`` (r from
  0) and IDCG the same sum over the first ``min(|test items|, k)`` ranks;

both averaged over those users. Users without test items are skipped, not counted as zeros.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from hybridrec.models.collaborative import (
    DEFAULT_BATCH_SIZE,
    CollaborativeModel,
    check_same_shape,
    check_user_items,
    mask_items,
    top_k,
)

log = logging.getLogger(__name__)

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Maps a 1-D ``user_index`` array to dense scores of shape (len(user_index), n_items)."""


def recall_ndcg_at_k(model_or_score_fn: CollaborativeModel | ScoreFn,
                     train_user_items: sp.csr_matrix, test_user_items: sp.csr_matrix,
                     k: int = 20, batch_size: int = DEFAULT_BATCH_SIZE,
                     show_progress: bool = True) -> dict[str, float]:
    """Recall@k and NDCG@k of a fitted model (or score function) over all test users.

    Returns ``{"recall@k": ..., "ndcg@k": ..., "users": n_evaluated, "eval_s": seconds}``.
    Memory: one dense (batch_size x n_items) float32 score block plus a boolean one.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    train = check_user_items(train_user_items, "train_user_items")
    test = check_user_items(test_user_items, "test_user_items")
    check_same_shape(test, train.shape, "test_user_items")
    if isinstance(model_or_score_fn, CollaborativeModel):
        check_same_shape(train, model_or_score_fn.shape, "train_user_items")
        score_fn = model_or_score_fn.score
    else:
        score_fn = model_or_score_fn
    n_items = train.shape[1]
    k = min(k, n_items)

    test_counts = np.diff(test.indptr)
    users = np.flatnonzero(test_counts)
    recall_sum = ndcg_sum = 0.0
    start = time.perf_counter()
    with tqdm(total=len(users), desc=f"evaluating top-{k}", unit="user",
              disable=not show_progress) as progress:
        for first in range(0, len(users), batch_size):
            batch = users[first:first + batch_size]
            scores = score_fn(batch)
            if scores.shape != (len(batch), n_items):
                raise ValueError(f"score function returned shape {scores.shape}, expected "
                                 f"{(len(batch), n_items)}")
            batch_recall, batch_ndcg = recall_ndcg_sums(scores, train[batch], test[batch], k)
            recall_sum += batch_recall
            ndcg_sum += batch_ndcg
            progress.update(len(batch))
    elapsed = time.perf_counter() - start
    result = {f"recall@{k}": recall_sum / max(len(users), 1),
              f"ndcg@{k}": ndcg_sum / max(len(users), 1),
              "users": int(len(users)), "eval_s": elapsed}
    log.info("recall@%d=%.4f ndcg@%d=%.4f over %d users in %.1fs", k, result[f"recall@{k}"], k,
             result[f"ndcg@{k}"], len(users), elapsed)
    return result


def recall_ndcg_sums(scores: np.ndarray, train_rows: sp.csr_matrix, test_rows: sp.csr_matrix,
                     k: int) -> tuple[float, float]:
    """Sums of Recall@k and NDCG@k over one batch of users, each with at least one test item:
    ``scores`` (batch x n_items) get the ``train_rows`` items set to -inf in place, then the top
    ``k`` are matched with ``test_rows``. A sweep over settings calls this once per setting."""
    k = min(k, scores.shape[1])
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal_dcg = np.cumsum(discounts)
    mask_items(scores, train_rows)
    best = top_k(scores, k)
    relevant = test_rows.toarray().astype(bool)
    hits = np.take_along_axis(relevant, best, axis=1)
    # An excluded (-inf) item can only be ranked when fewer than k items are eligible.
    hits &= np.isfinite(np.take_along_axis(scores, best, axis=1))
    n_relevant = np.diff(test_rows.indptr)
    recall = float((hits.sum(axis=1) / n_relevant).sum())
    ndcg = float(((hits @ discounts) / ideal_dcg[np.minimum(n_relevant, k) - 1]).sum())
    return recall, ndcg


def holdout_split(user_items: sp.csr_matrix, fraction: float = 0.1,
                  seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split ``user_items`` into (fit, validation) by moving a random ``fraction`` of each
    user's items (rounded, at least one, never all) to validation, so hyper-parameters are
    chosen without looking at the test set. Users with a single item stay whole."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    user_items = check_user_items(user_items)
    rng = np.random.default_rng(seed)
    counts = np.diff(user_items.indptr)
    n_held = np.where(counts > 1, np.clip(np.rint(counts * fraction), 1, counts - 1), 0)
    held = np.zeros(user_items.nnz, dtype=bool)
    for user in np.flatnonzero(n_held):
        lo = user_items.indptr[user]
        held[lo + rng.choice(counts[user], size=int(n_held[user]), replace=False)] = True
    rows = np.repeat(np.arange(user_items.shape[0]), counts)

    def part(keep: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((user_items.data[keep], (rows[keep], user_items.indices[keep])),
                             shape=user_items.shape)

    return part(~held), part(held)
