"""Rules, reasons, experiments, rate limits and candidate scoring of the feed, without services."""

import math
from datetime import datetime, timezone

import pandas as pd
import pytest

from hybridrec.config import ExperimentVariant, ServingSettings
from hybridrec.serving.candidates import (
    CandidateRequest, Candidates, ItemCache, Shared, covisit_scores, shared_sources,
)
from hybridrec.experiments import assign
from hybridrec.serving.reasons import SOURCE_REASONS, generic_reason, reason
from hybridrec.serving.rules import RuleSet, blocked_topics, hard_filters, open_at, select, topic_allowed
from hybridrec.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()


def test_soccer_fan_gets_no_baseball_but_other_families_stay_open():
    blocked = blocked_topics(TAXONOMY, {"sports": 1.0, "sports/soccer": 0.97, "sports/baseball": 0.03}, 0.1)
    assert "sports/baseball" in blocked and "sports/soccer" not in blocked
    assert not topic_allowed("sports/baseball", blocked)
    assert topic_allowed("sports/soccer", blocked) and topic_allowed("food/japanese/ramen", blocked)


def test_a_fan_of_both_siblings_keeps_both():
    blocked = blocked_topics(TAXONOMY, {"sports/soccer": 0.5, "sports/baseball": 0.5}, 0.1)
    assert topic_allowed("sports/baseball", blocked) and topic_allowed("sports/soccer", blocked)


def test_opening_hours_past_midnight():
    late = {"open_minute": 18 * 60, "close_minute": 26 * 60}
    assert open_at(late, 1 * 60) and open_at(late, 20 * 60) and not open_at(late, 12 * 60)
    assert open_at({}, 3 * 60)  # unknown hours never hide a place


def _rules(**overrides) -> RuleSet:
    return RuleSet.from_settings(ServingSettings(**overrides), "clip")


def test_topic_consistency_holds_on_the_configured_surfaces_unless_the_variant_turns_it_off():
    settings = ServingSettings()
    assert RuleSet.from_settings(settings, "clip").topic_consistency
    assert not RuleSet.from_settings(settings, "place").topic_consistency
    assert RuleSet.from_settings(ServingSettings(topic_consistency_surfaces=["place", "clip"]), "place").topic_consistency
    loose = ExperimentVariant(name="loose", topic_consistency=False, mmr_lambda=0.3)
    rules = RuleSet.from_settings(settings, "clip", loose)
    assert not rules.topic_consistency and rules.mmr_lambda == 0.3
    assert RuleSet.from_settings(settings, "clip").mmr_lambda == settings.mmr_lambda


def test_select_respects_creator_and_topic_caps():
    items = {f"c{i}": {"creator_id": "same" if i < 5 else f"cr{i}", "topic_path": "a" if i < 8 else f"t{i}",
                       "cf_vector": [1.0, float(i)]} for i in range(20)}
    ranked = [(f"c{i}", 1.0 - i / 100) for i in range(20)]
    picked = select(ranked, items, 10, _rules(max_per_creator=2, max_topic_share=0.5))
    assert sum(items[i]["creator_id"] == "same" for i in picked) <= 2
    assert sum(items[i]["topic_path"] == "a" for i in picked) <= 5
    assert len(picked) == 10 and len(set(picked)) == 10


def test_hard_filters_count_what_they_remove():
    items = {"x": {"topic_path": "sports/baseball"}, "y": {"topic_path": "sports/soccer"}}
    kept, removed = hard_filters(items, "clip", _rules(), {"sports/baseball"}, datetime.now(timezone.utc))
    assert kept == ["y"] and removed["topic"] == 1


def test_the_classifiers_topic_catches_a_baseball_clip_filed_under_sports():
    items = {"filed-broadly": {"topic_path": "sports", "predicted_topic_path": "sports/baseball"},
             "soccer": {"topic_path": "sports", "predicted_topic_path": "sports/soccer"},
             "unclassified": {"topic_path": "sports/soccer"}}
    kept, removed = hard_filters(items, "clip", _rules(), {"sports/baseball"}, datetime.now(timezone.utc))
    assert kept == ["soccer", "unclassified"] and removed["topic"] == 1


def test_reason_names_the_users_interests_then_falls_back_to_the_source():
    doc = {"tags": ["food/japanese/ramen", "food/japanese"], "topic_path": "food/japanese/ramen"}
    liked = reason(doc, ["als"], "place", {"food/japanese/ramen": 0.6}, {}, TAXONOMY, personal=True)
    assert liked.startswith("because you liked places with 'ramen")
    assert reason(doc, ["geo"], "place", {}, {}, TAXONOMY, personal=True) == "popular near you"
    assert "searched" in reason(doc, ["keyword"], "clip", {}, {"food/japanese/ramen": 1.0}, TAXONOMY, personal=True)


@pytest.mark.parametrize("sources", [[s] for s in SOURCE_REASONS] + [["keyword", "als"], []])
def test_generic_reasons_name_nothing_the_user_did(sources):
    """Without ``personal`` (the default) a reason names neither the user's interests nor their activity,
    whatever the source, even when the item matches what they searched for and liked."""
    doc = {"tags": ["food/japanese/ramen"], "topic_path": "food/japanese/ramen", "title": "Ramen Ya"}
    interests = {"food/japanese/ramen": 1.0}
    told = reason(doc, sources, "place", interests, interests, TAXONOMY)
    assert told == generic_reason(sources, "place")
    assert not any(word in told for word in ("ramen", "search", "liked", "you liked", "near you")), told


def test_variant_assignment_is_deterministic_and_follows_weights():
    variants = [ExperimentVariant(name="a", weight=3), ExperimentVariant(name="b", weight=1)]
    first = [assign("exp", variants, f"u{i}").name for i in range(4000)]
    assert first == [assign("exp", variants, f"u{i}").name for i in range(4000)]
    assert 0.70 < first.count("a") / len(first) < 0.80


def test_covisit_sums_neighbour_scores_of_engaged_items_and_ranks_by_score():
    seeds = [{"covisit": [{"item_id": "a", "score": 0.5}, {"item_id": "b", "score": 0.2}]},
             {"covisit": [{"item_id": "b", "score": 0.4}, {"item_id": "seen", "score": 0.9}]}]
    assert covisit_scores(seeds, frozenset({"seen"})) == pytest.approx({"b": 0.6, "a": 0.5})
    candidates = Candidates()
    candidates.add("covisit", [("a", 0.5, {}), ("b", 0.6, {})])
    candidates.pool("u", depth=10, size=10)
    frame = pd.DataFrame(candidates.frame())
    assert frame.set_index("item_id")["covisit_rank"].to_dict() == {"a": 2.0, "b": 1.0}
    assert frame["als_score"].isna().all()


def test_source_ranks_are_places_in_the_source_list_ties_by_item_id():
    candidates = Candidates()
    candidates.add("als", [("c", 0.5, {}), ("b", 0.9, {}), ("a", 0.5, {})])
    candidates.add("popular", [("d", 1.0, {})])
    candidates.pool("u", depth=10, size=10)
    frame = pd.DataFrame(candidates.frame()).set_index("item_id")
    assert frame["als_rank"].dropna().to_dict() == {"b": 1.0, "a": 2.0, "c": 3.0}


def test_pool_keeps_the_items_most_sources_agree_on_and_their_ranks_in_the_source_lists():
    candidates = Candidates()
    candidates.add("als", [("both", 0.5, {}), ("als-only", 0.9, {})])
    candidates.add("popular", [("both", 1.0, {}), ("pop-only", 2.0, {})])
    candidates.pool("u", depth=10, size=1)
    assert list(candidates.items) == ["both"] and candidates.counts() == {"als": 1, "popular": 1}
    assert candidates.frame()["als_rank"].tolist() == [2.0]  # its place in the als list, not in the pool


def test_shared_lists_drop_excluded_items_and_other_regions_and_score_topics_like_batch():
    shared = Shared(popular=[("p1", 3.0, "seoul"), ("p2", 2.0, "busan"), ("p3", 1.0, "seoul")], trending=[],
                    by_topic={"food/ramen": [("p3", 9.0, "seoul"), ("p4", 1.0, "seoul")]})
    request = CandidateRequest("u", "place", "idx", depth=5, exclude=frozenset({"p1"}),
                               topic_affinity={"food/ramen": 0.5, "food": 1.0},
                               item_filter=({"terms": {"region": ["seoul"]}},))
    sources = shared_sources(shared, request)
    assert sources["popular"] == [("p3", 1.0)]
    assert [i for i, _ in sources["content"]] == ["p3", "p4"]  # the parent topic matches no item
    assert [s for _, s in sources["content"]] == pytest.approx([0.5 * (math.log1p(p) + 1e-3) for p in (9.0, 1.0)])


class _CountingStore:
    def __init__(self):
        self.fetched: list[list[str]] = []

    def get_items(self, index, ids, fields):
        self.fetched.append(list(ids))
        return {i: {"item_id": i, "topic_path": "t", "cf_vector": [1.0, 0.0]} for i in ids if i != "gone"}


def test_item_cache_reads_each_document_once_and_evicts_the_least_recent():
    store = _CountingStore()
    cache = ItemCache(store, max_items=2)
    assert set(cache.get("idx", ["a", "b", "gone"])) == {"a", "b"}
    assert set(cache.get("idx", ["a", "b"])) == {"a", "b"} and store.fetched == [["a", "b", "gone"]]
    cache.get("idx", ["a"])
    cache.get("idx", ["c"])  # evicts b, the least recently used
    cache.get("idx", ["a", "b"])
    assert store.fetched[-1] == ["b"] and cache.get("idx", ["a"])["a"][1].topic_path == "t"


def test_similar_items_report_the_similarity_each_vector_field_retrieves_by():
    from hybridrec.serving.similar import _similarity

    assert _similarity("content_vector", 0.95) == pytest.approx(0.9)  # Lucene cosine: (1 + cos) / 2
    assert _similarity("cf_vector", 3.5) == pytest.approx(2.5)  # inner product: 1 + dot ...
    assert _similarity("cf_vector", 0.25) == pytest.approx(-3.0)  # ... or 1 / (1 - dot) below zero
