"""Contract tests run against every collaborative model, plus exact checks of the metric code.

Every model must: recover held-out items on data with obvious block structure, never return
excluded items, and reject transposed or out-of-range inputs with a clear error.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hybridrec.models.collaborative import (
    MODELS,
    BSPMModel,
    ChebyCFModel,
    CollaborativeModel,
    chebyshev_coefficients,
    low_pass_response,
    top_k,
)
from hybridrec.models.evaluation import holdout_split, recall_ndcg_at_k

N_GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP = 4, 15, 10
N_USERS, N_ITEMS = N_GROUPS * USERS_PER_GROUP, N_GROUPS * ITEMS_PER_GROUP

# Small settings for the tiny synthetic data (ALS: one factor per group); every registered
# model must appear here.
TINY_PARAMS = {
    "als": {"factors": 4, "regularization": 0.1, "alpha": 10.0, "iterations": 15,
            "num_threads": 1, "show_progress": False},
    "bspm": {"ideal_rank": 4, "ideal_weight": 0.2, "sharpen_time": 2.5},
    "gfcf": {"ideal_rank": 4, "ideal_weight": 0.3},
    "chebycf": {"order": 8, "flatness": 1.5, "ideal_rank": 4, "ideal_weight": 0.2,
                "degree_power": 0.4},
}
TINY_PARAMS["fusion"] = {"weights": {"chebycf": 1.0, "als": 0.3},
                         "members": {"chebycf": TINY_PARAMS["chebycf"], "als": TINY_PARAMS["als"]}}


def make_model(name: str) -> CollaborativeModel:
    return MODELS[name](**TINY_PARAMS[name])


@pytest.fixture(scope="module")
def blocks() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Users of group g like 8 of the 10 items of group g; one of those 8 is held out.

    Each train row also has one random item from another group as noise.
    """
    rng = np.random.default_rng(0)
    train_rows, train_cols, held_cols = [], [], []
    for user in range(N_USERS):
        group = user // USERS_PER_GROUP
        liked = group * ITEMS_PER_GROUP + rng.choice(ITEMS_PER_GROUP, 8, replace=False)
        noise = rng.choice([i for i in range(N_ITEMS) if i // ITEMS_PER_GROUP != group])
        kept = [*liked[1:], noise]
        train_rows += [user] * len(kept)
        train_cols += kept
        held_cols.append(liked[0])
    train = sp.csr_matrix((np.ones(len(train_rows), np.float32), (train_rows, train_cols)),
                          shape=(N_USERS, N_ITEMS))
    held = sp.csr_matrix((np.ones(N_USERS, np.float32), (np.arange(N_USERS), held_cols)),
                         shape=(N_USERS, N_ITEMS))
    return train, held


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request, blocks) -> CollaborativeModel:
    return make_model(request.param).fit(blocks[0])


def test_every_model_has_tiny_params():
    assert set(TINY_PARAMS) == set(MODELS)


def test_recovers_held_out_items(fitted, blocks):
    train, held = blocks
    users = np.arange(N_USERS)
    # Three unseen in-group items remain per user (10 - 7 kept); the held-out one is among them.
    items, _ = fitted.recommend(users, k=3, exclude=train)
    hit_rate = np.mean([held[u].indices[0] in items[u] for u in users])
    assert hit_rate >= 0.9, f"{fitted.name} recovered only {hit_rate:.0%} of held-out items"
    in_group = items // ITEMS_PER_GROUP == (users // USERS_PER_GROUP)[:, None]
    assert in_group.mean() >= 0.9
    assert recall_ndcg_at_k(fitted, train, held, k=3, show_progress=False)["recall@3"] >= 0.9


def test_excluded_items_never_returned(fitted, blocks):
    train, _ = blocks
    users = np.arange(N_USERS)
    items, scores = fitted.recommend(users, k=N_ITEMS, exclude=train, batch_size=7)
    for user in users:
        returned = items[user][items[user] >= 0]
        assert not set(returned) & set(train[user].indices)
        assert len(returned) == N_ITEMS - train[user].nnz
        assert np.all(np.diff(scores[user][items[user] >= 0]) <= 0)
    assert np.all(np.isneginf(scores[items < 0]))


def test_score_shape_and_user_checks(fitted):
    scores = fitted.score(np.array([0, 5, N_USERS - 1]))
    assert scores.shape == (3, N_ITEMS) and scores.dtype == np.float32
    with pytest.raises(IndexError):
        fitted.score(np.array([N_USERS]))
    with pytest.raises(IndexError):
        fitted.score(np.array([-1]))
    with pytest.raises(TypeError):
        fitted.score(np.array([0.0, 1.0]))


def test_transposed_matrices_are_rejected(fitted, blocks):
    train, held = blocks
    with pytest.raises(ValueError, match="transposed"):
        fitted.recommend(np.arange(3), k=2, exclude=train.T.tocsr())
    with pytest.raises(ValueError, match="transposed"):
        recall_ndcg_at_k(fitted, train, held.T.tocsr(), show_progress=False)
    with pytest.raises(ValueError, match="transposed"):
        recall_ndcg_at_k(fitted, train.T.tocsr(), held.T.tocsr(), show_progress=False)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fit_rejects_dense_and_unfitted_use(name, blocks):
    model = make_model(name)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.score(np.array([0]))
    with pytest.raises(TypeError, match="scipy.sparse"):
        model.fit(blocks[0].toarray())


def test_als_factors_follow_user_items_orientation(blocks):
    model = make_model("als").fit(blocks[0][:, :30])
    assert model.user_factors.shape == (N_USERS, 4)
    assert model.item_factors.shape == (30, 4)


def _dense_bspm(user_items: np.ndarray, rank: int, weight: float, time: float,
                steps: int) -> np.ndarray:
    """Reference BSPM-EM on dense matrices: P and the ideal filter formed explicitly, the
    sharpening ODE solved in closed form per step (degree-4 Taylor of expm = one RK4 step)."""
    user_deg, item_deg = user_items.sum(1), user_items.sum(0)
    norm = user_items / np.sqrt(user_deg)[:, None] / np.sqrt(item_deg)[None, :]
    linear = norm.T @ norm
    vt = np.linalg.svd(norm)[2][:rank]
    ideal = np.diag(item_deg ** -0.5) @ vt.T @ vt @ np.diag(item_deg ** 0.5)
    h = time / steps
    step = sum(np.linalg.matrix_power(-h * linear, j) / math.factorial(j) for j in range(5))
    return user_items @ (linear + weight * ideal) @ np.linalg.matrix_power(step, steps)


@pytest.mark.parametrize("sharpen_time,steps", [(0.0, 1), (2.5, 1), (3.0, 2)])
def test_bspm_matches_dense_reference(blocks, sharpen_time, steps):
    train = blocks[0]
    model = BSPMModel(ideal_rank=6, ideal_weight=0.3, sharpen_time=sharpen_time,
                      sharpen_steps=steps).fit(train)
    expected = _dense_bspm(train.toarray().astype(np.float64), 6, 0.3, sharpen_time, steps)
    np.testing.assert_allclose(model.score(np.arange(N_USERS)), expected, rtol=1e-4, atol=1e-5)


def test_bspm_rejects_rank_above_matrix_size(blocks):
    with pytest.raises(ValueError, match="ideal_rank"):
        BSPMModel(ideal_rank=N_ITEMS).fit(blocks[0])


def _item_graph_spectrum(user_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of the dense ``P = Rn^T Rn``, formed explicitly."""
    user_deg, item_deg = user_items.sum(1), user_items.sum(0)
    norm = user_items / np.sqrt(user_deg)[:, None] / np.sqrt(item_deg)[None, :]
    return np.linalg.eigh(norm.T @ norm)


@pytest.mark.parametrize("order,flatness", [(1, 1.0), (4, 0.7), (8, 1.5), (12, 3.0)])
def test_chebycf_polynomial_filter_is_its_polynomial_of_the_spectrum(blocks, order, flatness):
    """The Chebyshev recurrence on sparse matrices equals V p(mu) V^T with p evaluated on the
    exact eigenvalues of P, where p is the interpolant of the target response."""
    train = blocks[0]
    model = ChebyCFModel(order=order, flatness=flatness, ideal_rank=0).fit(train)
    mu, vectors = _item_graph_spectrum(train.toarray().astype(np.float64))
    response = np.polynomial.chebyshev.chebval(1.0 - 2.0 * mu, model.coefficients)
    signal = np.random.default_rng(1).random((N_ITEMS, 5)).astype(np.float32)
    expected = vectors @ (response[:, None] * (vectors.T @ signal))
    np.testing.assert_allclose(model.spectral_filter(signal), expected, rtol=1e-4, atol=1e-5)


def test_chebycf_approaches_the_exact_eigen_decomposition_filter(blocks):
    """With enough terms the polynomial filter is the target low-pass applied through an exact
    eigen-decomposition; flatness 1 is the linear filter P itself at any order."""
    train = blocks[0]
    dense = train.toarray().astype(np.float64)
    mu, vectors = _item_graph_spectrum(dense)
    signal = np.random.default_rng(2).random((N_ITEMS, 5))
    target = vectors @ (low_pass_response(np.clip(mu, 0, 1), 1.5)[:, None] * (vectors.T @ signal))
    errors = [np.abs(ChebyCFModel(order=order, flatness=1.5, ideal_rank=0).fit(train)
                     .spectral_filter(signal) - target).max() for order in (2, 8, 32)]
    assert errors[2] < 0.01 * np.abs(target).max() and errors[2] < errors[1] < errors[0]
    linear = vectors @ (mu[:, None] * (vectors.T @ signal))
    np.testing.assert_allclose(
        ChebyCFModel(order=5, flatness=1.0, ideal_rank=0).fit(train).spectral_filter(signal),
        linear, rtol=1e-4, atol=1e-5)


def test_chebycf_matches_dense_reference(blocks):
    """Degree normalisation and the ideal low-pass term, against dense matrices."""
    train = blocks[0]
    dense = train.toarray().astype(np.float64)
    model = ChebyCFModel(order=6, flatness=2.0, ideal_rank=5, ideal_weight=0.3,
                         degree_power=0.4).fit(train)
    mu, vectors = _item_graph_spectrum(dense)
    response = np.polynomial.chebyshev.chebval(1.0 - 2.0 * mu, model.coefficients)
    strongest = vectors[:, np.argsort(-mu)[:5]]
    item_deg = dense.sum(0)
    filtered = vectors @ np.diag(response) @ vectors.T + 0.3 * strongest @ strongest.T
    expected = (dense * item_deg ** -0.4) @ filtered * item_deg ** 0.4
    np.testing.assert_allclose(model.score(np.arange(N_USERS)), expected, rtol=1e-3, atol=1e-5)


def test_fusion_is_the_weighted_sum_of_standardised_member_scores(blocks):
    train = blocks[0]
    model = make_model("fusion").fit(train)
    users = np.arange(7)
    members = {name: MODELS[name](**TINY_PARAMS[name]).fit(train).score(users).astype(np.float64)
               for name in ("chebycf", "als")}
    z = {name: (s - s.mean(1, keepdims=True)) / s.std(1, keepdims=True) for name, s in members.items()}
    np.testing.assert_allclose(model.score(users), z["chebycf"] + 0.3 * z["als"], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="unknown"):
        MODELS["fusion"](weights={"nope": 1.0})


def test_chebyshev_coefficients_interpolate_at_the_nodes():
    nodes = np.cos(np.pi * (np.arange(7) + 0.5) / 7)
    coefficients = chebyshev_coefficients(np.exp, 6)
    np.testing.assert_allclose(np.polynomial.chebyshev.chebval(nodes, coefficients), np.exp(nodes),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="order"):
        ChebyCFModel(order=0)


# --- metric code -----------------------------------------------------------------------------

def test_recall_ndcg_hand_computed():
    """Three users, six items, k=3.

    user 0: item 0 is trained on (excluded) so the top-3 is items 1, 2, 3; test {2, 5} gives one
            hit at rank 1: recall 1/2, NDCG = (1/log2 3) / (1 + 1/log2 3).
    user 1: no test items, so not evaluated.
    user 2: top-3 is 5, 4, 3, all in test {0, 3, 4, 5}: recall 3/4, NDCG 1 (IDCG over 3 ranks).
    """
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                       [0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
                       [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], dtype=np.float32)
    train = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0] * 6]))
    test = sp.csr_matrix(np.array([[0, 0, 1, 0, 0, 1], [0] * 6, [1, 0, 0, 1, 1, 1]]))
    result = recall_ndcg_at_k(lambda users: scores[users].copy(), train, test, k=3,
                              batch_size=2, show_progress=False)
    ndcg_user0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert result["users"] == 2
    assert result["recall@3"] == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert result["ndcg@3"] == pytest.approx((ndcg_user0 + 1.0) / 2)


def test_excluded_train_item_never_counts_as_hit():
    """With k larger than the eligible items, an excluded item that is also in test is no hit."""
    scores = np.array([[3.0, 2.0, 1.0]], dtype=np.float32)
    train = sp.csr_matrix(np.array([[1, 0, 0]]))
    test = sp.csr_matrix(np.array([[1, 0, 1]]))
    result = recall_ndcg_at_k(lambda users: scores[users].copy(), train, test, k=3,
                              show_progress=False)
    assert result["recall@3"] == pytest.approx(0.5)
    assert result["ndcg@3"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))


def test_top_k_is_sorted_best_first():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [4.0, 3.0, 2.0, 1.0]])
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 3, 2], [0, 1, 2]])
    assert top_k(scores, 10).shape == (2, 4)


def test_holdout_split_partitions_each_user():
    rng = np.random.default_rng(1)
    user_items = sp.random(50, 80, density=0.2, format="csr", random_state=rng)
    user_items.data[:] = 1
    fit, held = holdout_split(user_items, 0.1, seed=3)
    assert fit.multiply(held).nnz == 0
    assert (fit + held - user_items).nnz == 0
    counts = np.diff(user_items.indptr)
    assert np.all(np.diff(fit.indptr)[counts > 0] >= 1)
    assert np.all(np.diff(held.indptr)[counts > 1] >= 1)
    again = holdout_split(user_items, 0.1, seed=3)[1]
    assert (again != held).nnz == 0


def test_gowalla_loader_reads_lightgcn_format(tmp_path: Path):
    bench = importlib.import_module("hybridrec.bench.gowalla")
    (tmp_path / "train.txt").write_text("0 0 2\n1 1\n2 3 0\n")
    (tmp_path / "test.txt").write_text("0 1\n1 4\n2 2\n")
    train, test = bench.load_gowalla(tmp_path)
    assert train.shape == test.shape == (3, 5)
    assert train[0].indices.tolist() == [0, 2] and test[1].indices.tolist() == [4]
    assert train.nnz == 5 and test.nnz == 3
