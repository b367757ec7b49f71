"""Writers of the world's text: reviews, clip titles, search queries and place names.

Every tagged phrase is a taxonomy surface form dropped into a template, and the writer returns
which form it used, so the ground truth says exactly what a keyword extractor could find. The
template wording itself never contains a surface form of the place aspects (a unit test checks),
so an extractor that finds "quiet" in a review found a real mention.
"""

from __future__ import annotations

import random
import re

from hybridrec.synthetic.common import Region
from hybridrec.taxonomy import Tag

_SLOT = re.compile(r"\{kw(?::([^/}]+)/([^}]+))?\}")
_HANGUL_FIRST, _HANGUL_LAST, _RIEUL = 0xAC00, 0xD7A3, 8


def _particle(word: str, after_consonant: str, after_vowel: str) -> str:
    """Korean particles change with the last syllable: 국밥이 / 라떼가; (으)로 treats a final ㄹ as a vowel."""
    code = ord(word[-1])
    if not _HANGUL_FIRST <= code <= _HANGUL_LAST:
        return after_vowel
    final = (code - _HANGUL_FIRST) % 28
    if after_consonant == "으로" and final == _RIEUL:
        return after_vowel
    return after_consonant if final else after_vowel


def fill(template: str, keyword: str) -> str:
    """``{kw}`` becomes the keyword; ``{kw:이/가}`` also attaches the particle the keyword takes."""
    return _SLOT.sub(lambda m: keyword + (_particle(keyword, m[1], m[2]) if m[1] else ""), template)


def _both(sentences: list[str]) -> dict[str, list[str]]:
    """Aspects whose sentences carry no sentiment of their own read the same in good and bad reviews."""
    return {"pos": sentences, "neg": sentences}


# Per aspect, language and sentiment. English templates never start with the slot, so the keyword
# appears in the text exactly as the taxonomy spells it.
REVIEW_TEMPLATES: dict[str, dict[str, dict[str, list[str]]]] = {
    "menu": {
        "ko": {"pos": ["{kw:이/가} 진하고 맛있어요.", "{kw:은/는} 꼭 드셔보세요.", "{kw:을/를} 시켰는데 정말 맛있었어요.",
                       "여기 {kw} 최고예요.", "{kw} 먹으러 또 올 거예요."],
               "neg": ["{kw:은/는} 기대보다 별로였어요.", "{kw:이/가} 좀 짰어요.", "{kw:을/를} 시켰는데 식어서 나왔어요."]},
        "en": {"pos": ["The {kw} was rich and delicious.", "Their {kw} is a must-try.",
                       "Ordered the {kw} and loved it.", "Came back just for the {kw}.", "Seriously good {kw}."],
               "neg": ["The {kw} was bland, honestly.", "Ordered the {kw} and it was disappointing.",
                       "The {kw} came out lukewarm."]},
    },
    "mood": {
        "ko": {"pos": ["{kw} 분위기가 마음에 들어요.", "전체적으로 {kw} 느낌이라 좋았어요."],
               "neg": ["{kw} 분위기인데 맛은 평범했어요.", "{kw} 느낌은 있지만 다시 갈지는 모르겠어요."]},
        "en": {"pos": ["Loved the {kw} atmosphere.", "Such a {kw} spot."],
               "neg": ["Nice {kw} atmosphere, but the dishes were average.",
                       "It has a {kw} feel, yet I left underwhelmed."]},
    },
    "purpose": {
        "ko": _both(["{kw} 장소로 딱이에요.", "{kw:으로/로} 방문했어요.", "{kw}에 추천합니다."]),
        "en": _both(["Perfect for a {kw}.", "We came for a {kw} and it worked well.", "Good choice for a {kw}."]),
    },
    "price": {
        "ko": _both(["전체적으로 {kw} 편이에요.", "{kw} 곳이에요."]),
        "en": _both(["It's {kw} for what you get.", "Overall {kw}, worth checking the menu first."]),
    },
    "service": {
        "ko": _both(["직원 응대는 {kw} 편이에요.", "서비스가 {kw} 편."]),
        "en": _both(["Service was {kw}.", "Staff were {kw} throughout."]),
    },
    "facility": {
        "ko": _both(["{kw} 있어서 편해요.", "참고로 {kw:이/가} 있어요."]),
        "en": _both(["Good to know: {kw}.", "Bonus: {kw}."]),
    },
}

FILLER: dict[str, dict[str, list[str]]] = {
    "ko": {"pos": ["다음에 또 방문할게요.", "웨이팅이 조금 있었어요.", "역에서 조금 걸어야 해요.", "전체적으로 만족합니다.",
                   "사진보다 실물이 나아요.", "화장실이 깨끗했어요."],
           "neg": ["다시 갈지는 모르겠어요.", "기대가 컸나 봐요.", "웨이팅이 너무 길었어요.", "자리가 좀 불편했어요."]},
    "en": {"pos": ["Will definitely come back.", "There was a short wait.", "Easy to find from the station.",
                   "Portions were generous.", "Clean restrooms too."],
           "neg": ["Not sure I would return.", "Expected more given the hype.", "The wait was far too long.",
                   "Seats were cramped."]},
}

_POSITIVE_SHARE = {1: 0.05, 2: 0.2, 3: 0.5, 4: 0.85, 5: 0.95}


def write_review(rnd: random.Random, tags: list[Tag], language: str, rating: int) -> tuple[str, list[tuple[Tag, str]]]:
    """A review mentioning 1-4 of the place's true tags plus untagged filler; returns (text, [(tag, keyword)])."""
    positive = _POSITIVE_SHARE[rating]
    mentioned = rnd.sample(tags, rnd.randint(1, min(4, len(tags))))
    sentences, mentions = [], []
    for tag in mentioned:
        keyword = rnd.choice(tag.surface(language))
        sentiment = "pos" if rnd.random() < positive else "neg"
        sentences.append(fill(rnd.choice(REVIEW_TEMPLATES[tag.aspect][language][sentiment]), keyword))
        mentions.append((tag, keyword))
    mood = "pos" if rating >= 3 else "neg"
    sentences += [rnd.choice(FILLER[language][mood]) for _ in range(rnd.randint(0, 2))]
    rnd.shuffle(sentences)
    return " ".join(sentences), mentions


CLIP_TITLES = {
    "ko": ["{kw} 레전드 모음", "오늘의 {kw}", "{kw} 1분 요약", "{kw} 브이로그", "요즘 난리난 {kw}", "{kw} 꿀팁 3가지",
           "이번 주 {kw} 이야기"],
    "en": ["best {kw} moments", "{kw} in 60 seconds", "my {kw} vlog", "you need to see this {kw}",
           "{kw} tips nobody tells you", "this week in {kw}"],
}
CLIP_DESCRIPTIONS = {
    "ko": ["{kw} 좋아하는 분들 구독 부탁드려요.", "{kw} 관련 영상 매주 올라옵니다.", "오늘은 {kw} 이야기를 해볼게요."],
    "en": ["more {kw} every week.", "all about {kw}, subscribe for more.", "today we talk {kw}."],
}


def write_clip_text(rnd: random.Random, topic: Tag, parent: Tag | None, language: str) -> tuple[str, str]:
    """(title, description): two surface forms of the topic, and the parent's as a hashtag when it has one."""
    forms = topic.surface(language)
    title = fill(rnd.choice(CLIP_TITLES[language]), rnd.choice(forms))
    description = fill(rnd.choice(CLIP_DESCRIPTIONS[language]), rnd.choice(forms))
    parent_forms = parent.surface(language) if parent is not None else ()
    if parent_forms:
        description += " #" + rnd.choice(parent_forms).replace(" ", "")
    return title, description


# Interest queries by topic family; food queries on the map mention a neighbourhood.
INTEREST_QUERIES = {
    "sports": {"ko": ["{kw} 하이라이트", "{kw} 명장면", "{kw}"], "en": ["{kw} highlights", "{kw} best plays", "{kw}"]},
    "travel": {"ko": ["{kw} 여행", "{kw} 여행 코스", "{kw} 가볼만한 곳"],
               "en": ["{kw} travel", "{kw} itinerary", "things to do in {kw}"]},
    "food-place": {"ko": ["{region} {kw}", "{region} {kw} 맛집", "{kw} 맛집 추천"],
                   "en": ["{kw} {region}", "best {kw} in {region}", "{kw} near {region}"]},
    "food-clip": {"ko": ["{kw} 먹방", "{kw} 리뷰 영상"], "en": ["{kw} mukbang", "{kw} review"]},
    "default": {"ko": ["{kw}", "{kw} 추천", "{kw} 모음", "요즘 핫한 {kw}"],
                "en": ["{kw}", "{kw} compilation", "best {kw}", "{kw} recommendations"]},
}
# Utility queries name destinations (the travel tags' forms) without being about an interest.
UTILITY_WITH_PLACE = {
    "ko": ["{kw} 비자", "{kw} 환율", "{kw} 날씨", "{kw} 대사관", "{kw} 시차"],
    "en": ["{kw} visa requirements", "{kw} exchange rate", "{kw} weather", "{kw} embassy", "{kw} time zone"],
}
UTILITY = {
    "ko": ["환율", "내일 날씨", "택배 조회", "비밀번호 재설정", "지하철 노선도", "오늘 미세먼지"],
    "en": ["weather tomorrow", "exchange rate", "delivery tracking", "password reset", "subway map", "usd to krw"],
}
NAVIGATIONAL = {
    "ko": ["네이버", "유튜브 로그인", "카카오맵", "네이버 메일", "쿠팡"],
    "en": ["youtube login", "naver", "gmail", "instagram", "google maps"],
}


def _keyword(rnd: random.Random, tag: Tag, language: str, menus: tuple[Tag, ...] = ()) -> str:
    """A surface form of the tag, or now and then of one of its dishes ("순대국밥 맛집" for a gukbap interest)."""
    if menus and rnd.random() < 0.4:
        return rnd.choice(rnd.choice(menus).surface(language))
    return rnd.choice(tag.surface(language))


def write_interest_query(rnd: random.Random, tags: list[Tag], language: str, region: Region | None = None,
                         menus: tuple[Tag, ...] = ()) -> str:
    """A query about one interest (templated by family) or two (their forms side by side, the destination
    first: "파타고니아 트레킹")."""
    if len(tags) == 2:
        return " ".join(_keyword(rnd, tag, language) for tag in sorted(tags, key=lambda t: t.top != "travel"))
    tag = tags[0]
    if tag.top == "food":
        family = "food-place" if region is not None else "food-clip"
    else:
        family = tag.top if tag.top in INTEREST_QUERIES else "default"
    template = rnd.choice(INTEREST_QUERIES[family][language])
    if region is not None:
        template = template.replace("{region}", region.name(language))
    return fill(template, _keyword(rnd, tag, language, menus if region is not None else ()))


def write_utility_query(rnd: random.Random, language: str, destinations: tuple[Tag, ...]) -> str:
    if rnd.random() < 0.6:
        destination = rnd.choice(destinations)
        return fill(rnd.choice(UTILITY_WITH_PLACE[language]), rnd.choice(destination.surface(language)))
    return rnd.choice(UTILITY[language])


def write_navigational_query(rnd: random.Random, language: str) -> str:
    return rnd.choice(NAVIGATIONAL[language])


PLACE_BRANDS = {
    "ko": ["할매", "옛날", "원조", "골목", "달빛", "소나무", "바다", "하루", "모모", "한울", "청기와", "연희"],
    "en": ["Blue", "Maple", "Little", "Urban", "Golden", "Corner", "Salt", "Oak", "Harbor", "Moss", "Tiny", "North"],
}
PLACE_SUFFIXES = {"ko": ["", "", " 본점", " 2호점"], "en": ["", "", " & Co.", " House"]}


def write_place_name(rnd: random.Random, category: Tag, language: str) -> str:
    """Brand + a category form: "할매 국밥집", "Maple Ramen Shop"."""
    form = rnd.choice(category.surface(language))
    if language == "en":
        form = form.title()
    return f"{rnd.choice(PLACE_BRANDS[language])} {form}{rnd.choice(PLACE_SUFFIXES[language])}"
