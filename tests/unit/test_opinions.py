"""Aspect opinions: a target and what is said of it, in one clause, read as the target's aspect."""

import pytest

from hybridrec.models.extraction.candidates import Gazetteer, _kiwi
from hybridrec.models.extraction.opinions import OpinionReader
from hybridrec.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def reader() -> OpinionReader:
    return OpinionReader(load_taxonomy())


def tags_of(reader: OpinionReader, text: str) -> set[str]:
    folded = text.casefold()
    tokens = _kiwi().tokenize(folded) if any("\uac00" <= ch <= "\ud7a3" for ch in folded) else None
    return {tag for _, tag in reader.read(folded, tokens)}


@pytest.mark.parametrize("text, expected", [
    ("Our bartender was really knowledgeable about mezcal.", {"service/friendly"}),
    ("Great prices for a downtown bistro.", {"price/cheap"}),
    ("The prices here are honestly a bit steep.", {"price/expensive"}),
    ("Pricing is fair for the portion size.", {"price/moderate"}),
    ("We waited 45 minutes for two bowls of soup.", {"service/slow"}),
    ("The bar was packed by eight on a Thursday.", {"mood/lively"}),
    ("종업원분이 메뉴를 하나씩 설명해 주셨어요", {"service/friendly"}),
    ("커피 값이 좀 사악해요", {"price/expensive"}),
    ("메인 요리 가격대는 적당한 편", {"price/moderate"}),
])
def test_an_opinion_of_a_target_means_its_aspect(reader, text, expected):
    assert tags_of(reader, text) == expected


@pytest.mark.parametrize("text", [
    "The waiter was not friendly and never smiled.",  # denied
    "The sandwich was great, the staff forgot our drinks.",  # praise of the food, not of the staff
    "Excellent noodles at the usual price.",  # an opinion before its target must stand right there
    "직원이 불친절하고 말투가 차가웠어요",  # 불- denies it
    "가격이 착하진 않아요",
])
def test_denied_or_unrelated_opinions_assert_nothing(reader, text):
    assert tags_of(reader, text) == set()


def test_great_means_friendly_of_staff_and_cheap_of_prices(reader):
    assert tags_of(reader, "Friendly servers, great prices.") == {"service/friendly", "price/cheap"}


def test_opinion_spans_are_grounded_candidates():
    gazetteer = Gazetteer(load_taxonomy())
    text = "honestly the staff were lovely; parking was a pain".casefold()
    found = {c.text: c for c in gazetteer.find(text)}
    assert found["staff were lovely"].tag.path == "service/friendly"
    assert all(span in text for span in found)


def test_fast_food_is_a_kind_of_meal_not_fast_service():
    gazetteer = Gazetteer(load_taxonomy())
    assert not [c for c in gazetteer.find("a fast food joint with a quick bite menu") if c.tag is not None
                and c.tag.path == "service/fast"]
    assert [c.tag.path for c in gazetteer.find("our order came out fast") if c.tag is not None] == ["service/fast"]


@pytest.mark.parametrize("text", ["가격착함!!", "직원친절", "ㅋㅋ 사장님최고", "값 싸"])
def test_korean_spans_are_never_empty_and_always_in_the_text(reader, text):
    folded = text.casefold()
    spans = reader.read(folded, _kiwi().tokenize(folded))
    assert spans and all(span and span in folded for span, _ in spans)
