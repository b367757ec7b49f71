"""The candidate pool's one definition (features/candidates.py), and batch and serving both reaching it."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hybridrec.batch.candidates import (
    CovisitationSource, FactorSource, KeywordSource, PopularSource, SurfaceData, TrendingSource, top_candidates,
)
from hybridrec.features import candidates as shared
from hybridrec.features.ranking import SOURCES
from hybridrec.serving.candidates import Candidates


def _pool(rows, depth=10, size=10):
    users, sources, items, scores = zip(*rows)
    return shared.pool(users, sources, items, scores, depth, size)


def test_ranks_are_places_in_each_source_list_with_ties_by_item_id():
    out = _pool([("u", "als", "c", 0.5), ("u", "als", "a", 0.5), ("u", "als", "b", 0.9), ("u", "popular", "c", 2.0)])
    ranks = dict(zip(out["item_id"], out["als_rank"]))
    assert ranks == {"b": 1.0, "a": 2.0, "c": 3.0}
    assert dict(zip(out["item_id"], out["popular_rank"]))["c"] == 1.0
    assert np.isnan(dict(zip(out["item_id"], out["popular_score"]))["a"])


def test_a_source_lists_only_its_depth_best_items_and_a_repeated_item_counts_once_at_its_best():
    rows = [("u", "content", f"i{n}", float(n)) for n in range(5)] + [("u", "content", "i0", 9.0)]
    out = _pool(rows, depth=3)
    assert dict(zip(out["item_id"], out["content_rank"])) == {"i0": 1.0, "i4": 2.0, "i3": 3.0}
    assert dict(zip(out["item_id"], out["content_score"]))["i0"] == 9.0


def test_the_pool_is_cut_by_fused_rank_and_ranks_are_not_recounted_inside_it():
    rows = [("u", "als", "x", 3.0), ("u", "als", "y", 2.0), ("u", "als", "both", 1.0),
            ("u", "graph", "z", 3.0), ("u", "graph", "both", 2.0)]
    out = _pool(rows, size=2)
    assert list(out["item_id"]) == ["both", "x"]  # 1/63 + 1/62 > 1/61 = x's and z's; x before z by id
    assert list(out["als_rank"]) == [3.0, 1.0]
    assert out["graph_rank"][0] == 2.0 and np.isnan(out["graph_rank"][1])
    assert out["fused"][0] == pytest.approx(1 / 63 + 1 / 62)


def test_users_are_pooled_separately_and_unknown_sources_refused():
    out = _pool([("u2", "als", "a", 1.0), ("u1", "als", "b", 1.0), ("u1", "als", "a", 2.0)], size=1)
    assert list(zip(out["user_id"], out["item_id"])) == [("u1", "a"), ("u2", "a")]
    with pytest.raises(ValueError, match="unknown candidate sources"):
        _pool([("u", "bm25", "a", 1.0)])


def test_scores_equal_to_the_tie_precision_are_ties():
    out = _pool([("u", "covisit", "b", 0.3), ("u", "covisit", "a", 0.1 + 0.2)])  # 0.30000000000000004
    assert list(out["item_id"]) == ["a", "b"] and list(out["covisit_rank"]) == [1.0, 2.0]


def test_source_formulas_and_interest_tags():
    assert shared.popular_score(0.0) == 0.0
    assert shared.trending_score(0.5, np.e - 1) == pytest.approx(0.5)
    assert shared.geo_score(0.0, 5.0, 5.0) == pytest.approx(0.5)
    assert shared.topic_score(0.5, 0.0) == pytest.approx(0.5e-3)
    tags = shared.interest_tags({"a": 2.0, "b": 2.0, "c": 1.0}, {"c": 1.0}, limit=2)
    assert tags == pytest.approx({"c": 1.2, "a": 0.4})
    assert shared.keyword_score({"a": 0.4, "c": 1.2}, ["a", "a", "x"]) == pytest.approx(0.4)
    assert shared.covisit_seeds({"b": 1.0, "a": 1.0, "c": 3.0}, 2) == ["c", "a"]


def _data() -> SurfaceData:
    rng = np.random.default_rng(3)
    n_users, n_items = 6, 30
    user_items = sp.random(n_users, n_items, density=0.2, random_state=4, format="csr", dtype=np.float64)
    user_items.data = np.round(user_items.data * 4) + 1
    return SurfaceData(
        surface="clip", user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{j:02d}" for j in range(n_items)])[::-1].copy(),  # index order is not id order
        user_items=user_items, seen=(user_items > 0).astype(np.float64).tocsr(),
        item_popularity=rng.integers(0, 4, n_items).astype(float),  # many ties
        item_topic=np.array(["t/a"] * n_items), user_topic_affinity=[{} for _ in range(n_users)],
        item_trending=rng.random(n_items) * (rng.random(n_items) > 0.3),
        item_tags=[("t/a", "x") if j % 3 else ("t/b",) for j in range(n_items)],
        user_interest_tags=[{"t/a": 0.5, "t/b": 0.5}] * n_users)


def test_batch_pool_equals_the_serving_pool_of_the_same_scores_and_breaks_ties_by_id():
    data = _data()
    factors = np.random.default_rng(5).normal(size=(6, 4)), np.random.default_rng(6).normal(size=(30, 4))
    sources = [FactorSource("als", *factors), PopularSource(data), TrendingSource(data), KeywordSource(data, 8),
               CovisitationSource(data, neighbours=3, seed_items=2)]
    batch = top_candidates(sources, data, np.arange(6), depth=4, pool_size=9)
    for user in range(6):
        online = Candidates()
        seen = set(data.item_ids[data.seen[user].indices])
        for source in sources:
            scores = source.score(np.array([user]))[0]
            online.add(source.name, [(data.item_ids[j], float(scores[j]), {}) for j in range(30)
                                     if data.item_ids[j] not in seen])
        online.pool(data.user_ids[user], depth=4, size=9)
        offline = batch[batch["user_id"] == data.user_ids[user]]
        assert list(offline["item_id"]) == list(online.frame()["item_id"])
        for source in SOURCES:
            for kind in ("score", "rank"):
                np.testing.assert_allclose(offline[f"{source}_{kind}"], online.frame()[f"{source}_{kind}"])
    popular = top_candidates([PopularSource(data)], data, np.arange(6), depth=4, pool_size=4)
    for user in range(6):
        seen = set(data.item_ids[data.seen[user].indices])
        expected = sorted((-data.item_popularity[data.item_index[i]], i) for i in data.item_ids if i not in seen)[:4]
        listed = popular[popular["user_index"] == user].sort_values("popular_rank")
        assert list(listed["item_id"]) == [i for _, i in expected]  # the most popular unseen, ties by id


def test_covisitation_sums_the_published_neighbours_of_the_strongest_seeds():
    data = _data()
    source = CovisitationSource(data, neighbours=3, seed_items=2)
    neighbours = source.neighbours()
    assert all(len(n) <= 3 for n in neighbours)
    user = 0
    engaged = {data.item_ids[j]: v for j, v in zip(data.user_items[user].indices, data.user_items[user].data)}
    expected = np.zeros(30)
    for seed in shared.covisit_seeds(engaged, 2):
        for j, s in neighbours[data.item_index[seed]]:
            expected[j] += s
    scores = source.score(np.array([user]))[0]
    np.testing.assert_allclose(np.where(np.isfinite(scores), scores, 0), expected)


def test_als_proposes_nothing_whose_factors_are_not_published():
    factors = np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 0.0]])
    scores = FactorSource("als", *factors).score(np.array([0, 1]))
    assert scores[0, 0] == 1.0 and np.isneginf(scores[0, 1]) and np.isneginf(scores[1]).all()
