"""The retrain serves each CF source from the family its selection chose, and refits and publishes that family."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from hybridrec.batch.candidates import SurfaceData
from hybridrec.batch.publish import _user_docs
from hybridrec.batch.retrain import _already_chosen, cf_families
from hybridrec.config import load_settings
from hybridrec.features.ranking import UserProfile
from hybridrec.models.collaborative import ALSModel, BSPMModel, ChebyCFModel
from hybridrec.models.selection import FamilyChoice, Selection


@pytest.fixture(scope="module")
def settings():
    settings = load_settings(environ={})
    selection = settings.retrain.selection.model_copy(update={
        "trials": 3, "budget_s": 90, "validation_share": 0.25, "max_users": 600, "max_graph_rank": 32})
    return settings.model_copy(update={"retrain": settings.retrain.model_copy(update={
        "selection": selection, "als": settings.retrain.als.model_copy(update={"iterations": 5})})})


def _data(matrix: sp.csr_matrix) -> SurfaceData:
    n_users, n_items = matrix.shape
    popularity = np.asarray(matrix.sum(axis=0)).ravel().astype(float)
    return SurfaceData(
        surface="clip", user_ids=np.array([f"u{i:03d}" for i in range(n_users)]),
        item_ids=np.array([f"i{j:03d}" for j in range(n_items)]), user_items=matrix, seen=matrix.copy(),
        item_popularity=popularity, item_topic=np.array(["t/a"] * n_items), user_topic_affinity=[{}] * n_users,
        item_trending=np.zeros(n_items), item_tags=[()] * n_items, user_interest_tags=[{}] * n_users)


def _blocks(rng, n_users=300, n_items=200, n_blocks=10, per_user=12) -> sp.csr_matrix:
    """Communities that each engage with their own block of items: what CF is for."""
    size = n_items // n_blocks
    block = rng.integers(0, n_blocks, n_users)
    cols = np.concatenate([b * size + rng.choice(size, per_user, replace=False) for b in block])
    rows = np.repeat(np.arange(n_users), per_user)
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))


def _chosen(ndcg_bspm: float, ndcg_chebycf: float, als_supported: bool) -> Selection:
    cheby = {"order": 4, "flatness": 0.8, "ideal_rank": 8, "ideal_weight": 0.1, "degree_power": 0.2}
    bspm = {"ideal_rank": 8, "ideal_weight": 0.2, "sharpen_time": 1.0}
    als = {"factors": 8, "regularization": 0.1, "alpha": 5.0}
    return Selection(20, 0.1, 50, 1.0, {
        "als": FamilyChoice("als", "als", als, 0.3 if als_supported else 0.05, als_supported),
        "bspm": FamilyChoice("bspm", "graph", bspm, ndcg_bspm, ndcg_bspm > 0.1),
        "chebycf": FamilyChoice("chebycf", "graph", cheby, ndcg_chebycf, ndcg_chebycf > 0.1)})


def test_the_refit_builds_the_winning_graph_family_and_publishes_its_lists(settings):
    matrix = _blocks(np.random.default_rng(3))
    data, cfg = _data(matrix), settings.retrain
    selection = _chosen(0.2, 0.3, als_supported=True)
    plan = _already_chosen(cfg, selection)(matrix)
    families = cf_families(cfg, matrix)
    graph, als = plan.build("graph", families), plan.build("als", families)
    assert isinstance(graph, ChebyCFModel) and graph.params() == selection.families["chebycf"].params
    assert isinstance(als, ALSModel) and als.params().items() >= selection.families["als"].params.items()
    bspm_wins = _already_chosen(cfg, _chosen(0.3, 0.2, True))(matrix).build("graph", families)
    assert isinstance(bspm_wins, BSPMModel) and bspm_wins.params().items() >= selection.families["bspm"].params.items()

    graph.fit(matrix)
    result = SimpleNamespace(surface="clip", data=data, als=als.fit(matrix), graph=graph)
    users = {u: UserProfile(u) for u in data.user_ids}
    docs = list(_user_docs(result, users, SimpleNamespace(run_id="r1"), settings.candidates))
    scores = graph.score(np.array([0]))[0]
    scores[matrix[0].indices] = -np.inf
    best = data.item_ids[np.argsort(-scores, kind="stable")[:settings.candidates.per_source]]
    assert [g["item_id"] for g in docs[0]["graph_candidates"]][:10] == list(best[:10])
