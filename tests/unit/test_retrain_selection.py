"""The retrain serves each CF source from the family its selection chose, refits and publishes that family,
drops a source none of whose families is supported from the pool and the published documents, and
searches the ranker's settings on its validation users."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hybridrec.batch.candidates import CovisitationSource, SurfaceData, surface_sources, top_candidates
from hybridrec.batch.publish import _item_docs, _user_docs
from hybridrec.batch.retrain import _already_chosen, _train_ranker, cf_families, cf_plan
from hybridrec.config import load_settings
from hybridrec.features.ranking import FEATURE_NAMES, ItemProfile, UserProfile
from hybridrec.models.collaborative import ALSModel, BSPMModel, ChebyCFModel
from hybridrec.models.selection import FamilyChoice, Selection


@pytest.fixture(scope="module")
def settings():
    settings = load_settings(environ={})
    selection = settings.retrain.selection.model_copy(update={
        "trials": 3, "budget_s": 90, "validation_share": 0.25, "max_users": 600, "max_graph_rank": 32,
        "ranker_trials": 4, "ranker_budget_s": 60})
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


def _popularity_world(rng) -> sp.csr_matrix:
    """Everyone draws from one popularity curve: nothing personal for a CF family to find."""
    drawn = rng.zipf(1.3, size=(600, 12)) % 400
    rows = np.repeat(np.arange(600), 12)
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, drawn.ravel())), shape=(600, 400))
    matrix.data[:] = 1.0
    return matrix


def _blocks(rng, n_users=300, n_items=200, n_blocks=10, per_user=12) -> sp.csr_matrix:
    """Communities that each engage with their own block of items: what CF is for."""
    size = n_items // n_blocks
    block = rng.integers(0, n_blocks, n_users)
    cols = np.concatenate([b * size + rng.choice(size, per_user, replace=False) for b in block])
    rows = np.repeat(np.arange(n_users), per_user)
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))


def _pool(settings, matrix):
    """The plan the retrain makes for ``matrix``, its models and the candidate pool of 50 users from them."""
    cfg, pool = settings.retrain, settings.candidates
    plan = cf_plan(cfg, matrix, None)
    data, families = _data(matrix), cf_families(cfg, matrix)
    als, graph = (plan.build(source, families) for source in ("als", "graph"))
    for model in (als, graph):
        if model is not None:
            model.fit(matrix)
    covisit = CovisitationSource(data, pool.covisit_neighbours, pool.covisit_seed_items)
    sources = surface_sources(data, als, graph, covisit, pool)
    return plan, als, graph, top_candidates(sources, data, np.arange(50), pool.per_source, pool.pool_size)


def test_a_source_whose_families_are_unsupported_is_absent_from_the_pool(settings):
    plan, als, graph, candidates = _pool(settings, _popularity_world(np.random.default_rng(1)))
    dropped = plan.selection.as_dict()["dropped"]
    assert "graph" in dropped and "not above popularity" in dropped["graph"] and graph is None
    assert candidates["graph_rank"].isna().all() and candidates["graph_score"].isna().all()
    assert candidates["popular_rank"].notna().any()
    assert candidates["als_rank"].isna().all() == ("als" in dropped) == (als is None)

    plan, als, graph, candidates = _pool(settings, _blocks(np.random.default_rng(2)))
    assert plan.selection.dropped() == {} and als is not None and graph is not None
    assert candidates["graph_rank"].notna().any() and candidates["als_rank"].notna().any()


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
    selection = _chosen(0.2, 0.3, als_supported=False)
    plan = _already_chosen(cfg, selection)(matrix)
    families = cf_families(cfg, matrix)
    graph, als = plan.build("graph", families), plan.build("als", families)
    assert isinstance(graph, ChebyCFModel) and graph.params() == selection.families["chebycf"].params and als is None
    bspm_wins = _already_chosen(cfg, _chosen(0.3, 0.2, True))(matrix).build("graph", families)
    assert isinstance(bspm_wins, BSPMModel) and bspm_wins.params().items() >= selection.families["bspm"].params.items()

    graph.fit(matrix)
    result = SimpleNamespace(surface="clip", data=data, als=None, graph=graph,
                             covisit=CovisitationSource(data, 5, 5))
    run = SimpleNamespace(run_id="r1")
    users = {u: UserProfile(u) for u in data.user_ids}
    docs = list(_user_docs(result, users, run, settings.candidates))
    scores = graph.score(np.array([0]))[0]
    scores[matrix[0].indices] = -np.inf
    best = data.item_ids[np.argsort(-scores, kind="stable")[:settings.candidates.per_source]]
    assert [g["item_id"] for g in docs[0]["graph_candidates"]][:10] == list(best[:10])
    assert all("cf_vector" not in d for d in docs)  # the als source was dropped: no CF vectors published
    items = pd.DataFrame({"item_id": data.item_ids, "title": "t"})
    item_docs = list(_item_docs(result, {i: ItemProfile(i, "t/a") for i in data.item_ids}, items, run))
    assert len(item_docs) == len(data.item_ids) and all("cf_vector" not in d for d in item_docs)

    dropped = SimpleNamespace(**{**vars(result), "graph": None,
                                 "als": ALSModel(factors=4, iterations=2, show_progress=False).fit(matrix)})
    docs = list(_user_docs(dropped, users, run, settings.candidates))
    assert all(d["graph_candidates"] == [] for d in docs) and any("cf_vector" in d for d in docs)


def _ranker_table(rng, n_users=80, per_user=20) -> pd.DataFrame:
    features = pd.DataFrame(rng.normal(size=(n_users * per_user, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    signal = features["als_score"] + 0.5 * features["topic_affinity"] + rng.normal(scale=0.5, size=len(features))
    gain = np.where(signal > 1.5, 2, np.where(signal > 1.0, 1, 0))
    users = np.repeat([f"u{i:03d}" for i in range(n_users)], per_user)
    return pd.concat([pd.DataFrame({"user_id": users, "item_id": [f"i{i}" for i in range(len(users))]}),
                      features.astype(np.float32), pd.DataFrame({"gain": gain})], axis=1)


def test_the_rankers_settings_are_searched_from_last_nights_and_recorded(settings):
    table, cfg = _ranker_table(np.random.default_rng(4)), settings.retrain
    cfg = cfg.model_copy(update={"ranker": cfg.ranker.model_copy(update={"validation_share": 0.25})})
    selection = _chosen(0.2, 0.3, als_supported=True)
    warm = {"num_leaves": 15, "learning_rate": 0.1, "min_child_samples": 20, "n_estimators": 40}
    ranker = _train_ranker(table, cfg, selection, warm)
    chosen = selection.ranker
    assert chosen.trials[0]["params"] == {k: warm[k] for k in ("num_leaves", "learning_rate", "min_child_samples")}
    assert 1 <= len(chosen.trials) <= cfg.selection.ranker_trials
    best = max(chosen.trials, key=lambda t: t["ndcg"])
    assert chosen.validation_ndcg == best["ndcg"] and chosen.params == {**best["params"], "n_estimators": best["trees"]}
    assert ranker.validation() == (pytest.approx(best["ndcg"], abs=1e-5), best["trees"])
    assert "ranker" in selection.as_dict() and selection.as_dict()["ranker"]["params"] == chosen.params

    off = cfg.model_copy(update={"selection": cfg.selection.model_copy(update={"ranker_trials": 0})})
    selection = _chosen(0.2, 0.3, als_supported=True)
    configured = _train_ranker(table, off, selection, warm)
    assert selection.ranker is None and configured.booster.params["num_leaves"] == cfg.ranker.num_leaves
