"""A generative model's tag stays only on a keyword that means it (real multilingual encoder)."""

from __future__ import annotations

import pytest

from hybridrec.config import Settings
from hybridrec.models.extraction.grounding import TagGrounder
from hybridrec.models.extraction.schema import Keyword, KeywordSet, QueryTags
from hybridrec.models.text import load_embedder
from hybridrec.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def grounder() -> TagGrounder:
    cfg = Settings().extraction
    return TagGrounder(load_taxonomy(), load_embedder(cfg.embedder, 1), cfg.tag_grounding)


def test_a_tag_on_a_keyword_that_does_not_mean_it_is_dropped_and_the_keyword_kept(grounder):
    found = KeywordSet(keywords=(
        Keyword(text="조용해서", weight=0.9, tag="mood/quiet", aspect="mood"),
        Keyword(text="주차도 편해요", weight=0.8, tag="service/fast", aspect="service"),
        Keyword(text="cozy", weight=0.7, tag="mood/quiet", aspect="mood"),
    ))
    kept = grounder.keywords(found)
    assert [k.tag for k in kept.keywords] == ["mood/quiet", None, None]
    assert [k.text for k in kept.keywords] == ["조용해서", "주차도 편해요", "cozy"]


def test_query_tags_keep_the_meant_one_most_specific_and_drop_sibling_spray(grounder):
    sprayed = QueryTags(intent="interest", tags=("sports", "sports/soccer", "gaming"), keywords=("토트넘", "하이라이트"))
    assert grounder.query("토트넘 하이라이트", sprayed).tags == ("sports/soccer",)
    car = QueryTags(intent="interest", tags=("sports/golf", "sports"), keywords=("아반떼",))
    assert grounder.query("아반떼 시승기", car).tags == ()
