"""A user who searched only for something the taxonomy does not name still gets candidates by their words."""

from __future__ import annotations

from hybridrec.features.ranking import UserProfile
from hybridrec.serving import cold_start
from hybridrec.serving.candidates import CandidateRequest, build_queries

CONTEXT = {"search_tags": [], "search_keywords": [{"keyword": "frieren season 2", "weight": 1.5},
                                                  {"keyword": "장송의 프리렌", "weight": 0.5},
                                                  {"keyword": "faded", "weight": 0.0}]}


def test_search_words_make_a_searcher_and_a_bm25_query():
    keywords = cold_start.search_keywords(CONTEXT, limit=5)
    assert keywords == ("frieren season 2", "장송의 프리렌")  # heaviest first, none of zero weight
    assert cold_start.segment(UserProfile("u1"), False, {}, CONTEXT, keywords, heavy_items=10) == "searcher"
    assert cold_start.segment(UserProfile("u1"), False, {}, CONTEXT, (), heavy_items=10) == "new"
    request = CandidateRequest(user_id="u1", surface="clip", index="items", depth=10, exclude=frozenset(),
                               interest_keywords=keywords)
    query = build_queries(request)["keyword"]["query"]["bool"]["should"]
    assert query == [{"multi_match": {"query": "frieren season 2 장송의 프리렌",
                                      "fields": ["title", "text", "keywords"]}}]


def test_no_tags_and_no_words_ask_no_keyword_query():
    request = CandidateRequest(user_id="u1", surface="clip", index="items", depth=10, exclude=frozenset())
    assert "keyword" not in build_queries(request)
