"""The retrain's model selection picks per dataset, warm-starts from last night, flags what fails popularity
and drops the candidate sources none of whose families is supported."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hybridrec.models.selection import als_family, bspm_family, chebycf_family, select

FAMILIES = [als_family(iterations=10, seed=0), bspm_family(max_rank=64, seed=0),
            chebycf_family(max_rank=64, max_order=10, seed=0)]


def _dense_low_rank(rng, n_users=600, n_items=400, rank=4, per_user=40) -> sp.csr_matrix:
    """Each user takes the 40 items a rank-4 taste model (plus noise) ranks highest: smooth, dense."""
    scores = rng.normal(size=(n_users, rank)) @ rng.normal(size=(n_items, rank)).T + rng.gumbel(size=(n_users, n_items))
    top = np.argsort(-scores, axis=1)[:, :per_user]
    rows = np.repeat(np.arange(n_users), per_user)
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, top.ravel())), shape=(n_users, n_items))


def _sparse_noisy_blocks(rng, n_users=800, n_items=600, n_blocks=30, in_block=4, noise=6) -> sp.csr_matrix:
    """Disconnected communities: strong repeat interactions inside a user's block, weak random ones outside."""
    block, size = rng.integers(0, n_blocks, n_users), n_items // n_blocks
    rows, cols, values = [], [], []
    for user in range(n_users):
        cols += list(block[user] * size + rng.choice(size, in_block, replace=False))
        cols += list(rng.choice(n_items, noise, replace=False))
        rows += [user] * (in_block + noise)
        values += [5.0] * in_block + [1.0] * noise
    matrix = sp.csr_matrix((np.array(values, np.float32), (rows, cols)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return matrix


def _select(matrix, warm=None):
    return select(FAMILIES, matrix, k=20, trials=6, budget_s=120, validation_share=0.25, max_users=800, seed=0,
                  warm_start=warm)


def test_the_data_decides_the_family_and_the_better_graph_filter_serves_the_graph_source():
    rng = np.random.default_rng(0)
    dense = _select(_dense_low_rank(rng))
    sparse = _select(_sparse_noisy_blocks(rng))
    assert dense.best() in ("bspm", "chebycf") and sparse.best() == "als"
    for selection in (dense, sparse):
        assert all(c.supported and c.validation_ndcg > selection.popularity_ndcg for c in selection.families.values())
        assert all(len(c.trials) == 6 for c in selection.families.values())
        graph = max((selection.families[f] for f in ("bspm", "chebycf")), key=lambda c: c.validation_ndcg)
        assert selection.sources()["graph"] is graph and selection.sources()["als"].family == "als"
        assert selection.dropped() == {} and selection.as_dict()["sources"]["graph"] == graph.family
    assert dense.families[dense.best()].validation_ndcg > 1.2 * dense.families["als"].validation_ndcg


def test_last_nights_winner_is_tried_first_and_a_popularity_world_drops_its_sources():
    rng = np.random.default_rng(1)
    popularity = rng.zipf(1.3, size=(600, 12)) % 400  # everyone draws from one popularity curve: nothing personal
    rows = np.repeat(np.arange(600), 12)
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, popularity.ravel())), shape=(600, 400))
    matrix.data[:] = 1.0
    warm = {"als": {"factors": 32, "regularization": 1.0, "alpha": 5.0}}
    selection = _select(matrix, warm)
    assert selection.families["als"].trials[0]["params"] == warm["als"]
    graph_filters = [selection.families[f] for f in ("bspm", "chebycf")]
    assert not any(c.supported for c in graph_filters)  # ALS, as strongly regularised as it likes, nearly ties
    assert all(c.validation_ndcg <= selection.popularity_ndcg for c in graph_filters)
    assert "graph" not in selection.sources() and "not above popularity" in selection.as_dict()["dropped"]["graph"]
    assert set(selection.sources()) | set(selection.dropped()) == {"als", "graph"}
