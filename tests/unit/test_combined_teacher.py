"""The generative teacher combined with the offline reader: offline first (the default), or a confidence vote."""

from hybridrec.contract import QueryIntent
from hybridrec.models.extraction.combined import merge_review, vote_query
from hybridrec.models.extraction.schema import Keyword, KeywordSet, Outcome, QueryTags


def _tags(intent, tags=(), confidence=0.5):
    return Outcome(QueryTags(intent=intent, tags=tags, confidence=confidence))


def test_the_more_confident_reader_decides_the_intent_and_agreeing_readers_pool_tags():
    model = _tags(QueryIntent.INTEREST, ("travel/south-america",), 0.38)
    assert vote_query(model, _tags(QueryIntent.UTILITY, (), 0.9), "vote").value.intent is QueryIntent.UTILITY
    pooled = vote_query(_tags(QueryIntent.INTEREST, ("sports/soccer",), 0.8),
                        _tags(QueryIntent.INTEREST, ("mood/lively",), 0.6), "vote").value
    assert set(pooled.tags) == {"sports/soccer", "mood/lively"}
    rejected = Outcome(None, "ungrounded_keyword")
    stand_in = vote_query(rejected, _tags(QueryIntent.UTILITY, (), 0.7), "vote")
    assert stand_in.value.intent is QueryIntent.UTILITY and stand_in.reason == "ungrounded_keyword"


def test_a_review_keeps_the_models_keywords_and_gains_the_tags_it_missed_within_the_limit():
    model = Outcome(KeywordSet(keywords=(Keyword(text="carbonara", weight=1.0), Keyword(text="staff", weight=0.5))))
    offline = Outcome(KeywordSet(keywords=(Keyword(text="friendly", weight=0.9, tag="service/friendly"),)))
    merged = merge_review(model, offline, max_keywords=2, rule="vote").value
    assert [k.text for k in merged.keywords] == ["carbonara", "friendly"]
    assert merged.tags == {"service/friendly": 0.9}


def test_offline_first_keeps_the_offline_reading_and_adds_the_models_words():
    confident_model = Outcome(QueryTags(intent=QueryIntent.NAVIGATIONAL, confidence=0.84, keywords=("캠핑장",)))
    offline = Outcome(QueryTags(intent=QueryIntent.INTEREST, tags=("travel",), keywords=("애견동반",), confidence=0.21))
    assert vote_query(confident_model, offline).value == offline.value  # a confident model does not override
    interest = Outcome(QueryTags(intent=QueryIntent.INTEREST, tags=("sports",), keywords=("캠핑장",), confidence=0.9))
    read = vote_query(interest, offline).value
    assert (read.tags, read.keywords) == (("travel",), ("애견동반", "캠핑장"))
    model = Outcome(KeywordSet(keywords=(Keyword(text="carbonara", weight=1.0, tag="food"),
                                         Keyword(text="cozy corner", weight=0.8, tag="mood/cozy"))))
    offline_review = Outcome(KeywordSet(keywords=(Keyword(text="cozy", weight=0.9, tag="mood/cozy"),
                                                  Keyword(text="pasta place", weight=0.5))))
    merged = merge_review(model, offline_review, max_keywords=3).value
    assert [(k.text, k.tag) for k in merged.keywords] == [("cozy", "mood/cozy"), ("carbonara", None),
                                                           ("cozy corner", "mood/cozy")]
