"""The rule-based query tagger: utility keywords win, taxonomy forms ground, the rest is navigational."""

import pytest

from hybridrec.batch.synthetic import generate_world
from hybridrec.config import SyntheticSettings, load_settings
from hybridrec.contract import SEARCH_QUERIES, TRUTH_QUERY_LABELS, QueryIntent
from hybridrec.streaming.tagging import QueryTags, RuleQueryTagger, make_query_tagger
from hybridrec.taxonomy import load_taxonomy

TAGGER = RuleQueryTagger()


@pytest.mark.parametrize("text, expected", [
    ("손흥민 하이라이트", QueryTags(QueryIntent.INTEREST, ("sports/soccer",))),
    ("Best Sushi in Gangnam", QueryTags(QueryIntent.INTEREST, ("food/japanese/sushi",))),
    ("son heung-min highlights", QueryTags(QueryIntent.INTEREST, ("sports/soccer",))),
    ("파타고니아 러닝크루", QueryTags(QueryIntent.INTEREST, ("travel/south-america", "sports/running"))),
    ("국밥이 먹고 싶다", QueryTags(QueryIntent.INTEREST, ("food/korean/gukbap",))),  # particle attached
    ("페루 비자", QueryTags(QueryIntent.UTILITY, ())),  # names a destination, yet a task
    ("peru exchange rate", QueryTags(QueryIntent.UTILITY, ())),
    ("내일 날씨", QueryTags(QueryIntent.UTILITY, ())),
    ("쿠팡", QueryTags(QueryIntent.NAVIGATIONAL, ())),
    ("", QueryTags(QueryIntent.NAVIGATIONAL, ())),
])
def test_queries_are_tagged(text, expected):
    assert TAGGER.tag(text) == expected


def test_interest_queries_of_the_synthetic_world_are_recovered():
    """Against the world's truth labels: interest vs not is what the context relies on."""
    cfg = SyntheticSettings(n_users=200, n_places=60, n_clips=200, n_events=1000, n_days=2)
    tables = {}
    for spec, table in generate_world(cfg):
        if spec in (SEARCH_QUERIES, TRUTH_QUERY_LABELS):
            tables[spec.name] = table
        if len(tables) == 2:
            break
    taxonomy = load_taxonomy()
    texts = tables[SEARCH_QUERIES.name]["text"].to_pylist()
    labels = tables[TRUTH_QUERY_LABELS.name].to_pylist()
    hits = interest_total = intent_right = 0
    for text, label in zip(texts, labels):
        got = TAGGER.tag(text)
        intent_right += (got.intent == QueryIntent.INTEREST) == (label["intent"] == QueryIntent.INTEREST.value)
        if label["intent"] == QueryIntent.INTEREST.value:
            interest_total += 1
            grounded = {a.path for tag in got.tags for a in (taxonomy.get(tag), *taxonomy.ancestors(tag))}
            hits += set(label["tags"]) <= grounded
    assert intent_right / len(texts) >= 0.95
    assert hits / interest_total >= 0.95


def test_the_learned_tagger_plugs_in_through_config():
    settings = load_settings(environ={"HYBRIDREC__STREAMING__QUERY_TAGGER": "extraction"})
    tagger = make_query_tagger(settings)
    assert tagger.tag("손흥민 하이라이트") == QueryTags(QueryIntent.INTEREST, ("sports/soccer",))
    assert tagger.tag("peru exchange rate").intent == QueryIntent.UTILITY
    rules = make_query_tagger(load_settings(environ={"HYBRIDREC__STREAMING__QUERY_TAGGER": "rules"}))
    assert rules.tag("nba") == QueryTags(QueryIntent.INTEREST, ("sports/basketball",))


def test_the_student_tagger_without_a_distill_run_fails_loudly(tmp_path):
    settings = load_settings(environ={"HYBRIDREC__LAKE__URI": f"sqlite:///{tmp_path / 'catalog.db'}",
                                      "HYBRIDREC__LAKE__WAREHOUSE": tmp_path.as_uri()})
    assert settings.streaming.query_tagger == "student"
    with pytest.raises(LookupError, match="hybridrec distill"):
        make_query_tagger(settings)
