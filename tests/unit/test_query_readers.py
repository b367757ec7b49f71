"""The query readers behind the one QueryTagger: the rules (cue words win, taxonomy forms ground, the rest
is an interest with its words), and the factory the stream, distill and serving share."""

import pytest

from hybridrec.synthetic import generate_world
from hybridrec.config import SyntheticSettings, load_settings
from hybridrec.contract import SEARCH_QUERIES, TRUTH_QUERY_LABELS, QueryIntent
from hybridrec.models.extraction import make_query_tagger
from hybridrec.models.extraction.rules import RuleQueryReader
from hybridrec.taxonomy import load_taxonomy

TAGGER = RuleQueryReader()


@pytest.mark.parametrize("text, expected", [
    ("손흥민 하이라이트", (QueryIntent.INTEREST, ("sports/soccer",))),
    ("Best Sushi in Gangnam", (QueryIntent.INTEREST, ("food/japanese/sushi",))),
    ("son heung-min highlights", (QueryIntent.INTEREST, ("sports/soccer",))),
    ("파타고니아 러닝크루", (QueryIntent.INTEREST, ("travel/south-america", "sports/running"))),
    ("국밥이 먹고 싶다", (QueryIntent.INTEREST, ("food/korean/gukbap",))),  # particle attached
    ("페루 비자", (QueryIntent.UTILITY, ())),  # names a destination, yet a task
    ("peru exchange rate", (QueryIntent.UTILITY, ())),
    ("내일 날씨", (QueryIntent.UTILITY, ())),
    ("쿠팡", (QueryIntent.NAVIGATIONAL, ())),
    ("", (QueryIntent.NAVIGATIONAL, ())),
])
def test_queries_are_tagged(text, expected):
    got = TAGGER.read(text)
    assert (got.intent, got.tags) == expected


def test_an_interest_the_taxonomy_does_not_name_keeps_its_words():
    anime = TAGGER.read("Frieren  Season 2 OST")
    assert (anime.intent, anime.tags, anime.keywords) == (QueryIntent.INTEREST, (), ("frieren season 2 ost",))
    assert TAGGER.read("페루 비자").keywords == ()  # a lookup leaves no words behind
    long_query = TAGGER.read("a very long query about the history of the roman empire and its emperors")
    assert long_query.keywords == ("a very long query about the history of",)  # cut at a word boundary


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
        got = TAGGER.read(text)
        intent_right += (got.intent == QueryIntent.INTEREST) == (label["intent"] == QueryIntent.INTEREST.value)
        if label["intent"] == QueryIntent.INTEREST.value:
            interest_total += 1
            grounded = {a.path for tag in got.tags for a in (taxonomy.get(tag), *taxonomy.ancestors(tag))}
            hits += set(label["tags"]) <= grounded
    assert intent_right / len(texts) >= 0.95
    assert hits / interest_total >= 0.95


def test_every_reader_plugs_in_through_one_factory():
    settings = load_settings()
    tagger = make_query_tagger(settings, reader="extraction")
    soccer = tagger.read("손흥민 하이라이트")
    assert (soccer.intent, soccer.tags) == (QueryIntent.INTEREST, ("sports/soccer",))
    assert tagger.read("peru exchange rate").intent == QueryIntent.UTILITY
    rules = make_query_tagger(settings, reader="rules", cache_size=10)
    assert rules.read("nba").tags == ("sports/basketball",) and rules.read("nba") is rules.read("nba")
    with pytest.raises(ValueError, match="unknown query reader"):
        make_query_tagger(settings, reader="oracle")


def test_the_student_reader_without_a_distill_run_fails_loudly(tmp_path):
    settings = load_settings(environ={"HYBRIDREC__LAKE__URI": f"sqlite:///{tmp_path / 'catalog.db'}",
                                      "HYBRIDREC__LAKE__WAREHOUSE": tmp_path.as_uri()})
    assert settings.streaming.query_tagger == "student"
    with pytest.raises(LookupError, match="hybridrec distill"):
        make_query_tagger(settings, reader=settings.streaming.query_tagger)
