"""Unlabelled queries for the teacher to label, beyond what the search log holds.

A search log repeats a few thousand phrasings; a student that only saw those would meet its first
typo or short query unprepared. The pool writes queries from the taxonomy's surface forms with
phrasings, spacing slips and typos the log lacks, plus tasks (visa, weather ...) and site names.
It writes no labels: the teacher labels the pool like any other query, so what the student learns
stays the teacher's judgement. The gold set is never read here.
"""

from __future__ import annotations

import random

from hybridrec.taxonomy import Tag, Taxonomy

PHRASES = {
    "ko": {"any": ["{kw}", "{kw} 추천", "{kw} 영상", "{kw} 모음", "요즘 {kw}", "{kw} 입문", "{kw} 꿀팁", "{kw} 리뷰",
                   "{kw} 브이로그", "{kw} 정리", "{kw} 순위", "{kw} 레전드"],
           "sports": ["{kw} 하이라이트", "{kw} 경기", "{kw} 골", "{kw} 직관", "{kw} 명장면"],
           "music": ["{kw} 무대", "{kw} 직캠", "{kw} 라이브", "{kw} 노래", "{kw} 플레이리스트"],
           "travel": ["{kw} 여행", "{kw} 여행 코스", "{kw} 가볼만한 곳", "{kw} 일정", "{kw} 배낭여행", "{kw} 자유여행"],
           "food": ["{kw} 맛집", "{kw} 먹방", "{kw} 맛집 추천", "{kw} 잘하는 집", "{kw} 레시피"]},
    "en": {"any": ["{kw}", "best {kw}", "{kw} videos", "{kw} compilation", "{kw} for beginners", "{kw} tips",
                   "{kw} review", "{kw} vlog", "top {kw}", "{kw} explained"],
           "sports": ["{kw} highlights", "{kw} goals", "{kw} match", "{kw} best moments", "{kw} standings"],
           "music": ["{kw} live", "{kw} stage", "{kw} fancam", "{kw} songs", "{kw} playlist"],
           "travel": ["{kw} trip", "{kw} itinerary", "{kw} travel guide", "things to do in {kw}", "{kw} backpacking"],
           "food": ["{kw} near me", "best {kw} in seoul", "{kw} recipe", "{kw} mukbang", "where to eat {kw}"]},
}
TASKS = {
    "ko": ["{kw} 비자", "{kw} 비자 발급", "{kw} 환율", "{kw} 날씨", "{kw} 날씨 예보", "{kw} 대사관", "{kw} 영사관",
           "{kw} 시차", "{kw} 입국", "{kw} 미세먼지"],
    "en": ["{kw} visa", "visa for {kw}", "{kw} exchange rate", "{kw} currency", "{kw} weather", "weather in {kw}",
           "{kw} embassy", "{kw} consulate", "{kw} time zone", "{kw} time difference"],
}
PLAIN_TASKS = {
    "ko": ["환율", "오늘 날씨", "주간 날씨", "택배 조회", "배송 조회", "비밀번호 변경", "지하철 노선도", "버스 시간표", "미세먼지 농도",
           "번역기", "계산기", "여권 발급", "고객센터", "시차 계산"],
    "en": ["exchange rate", "weather today", "weekly forecast", "track my package", "delivery tracking",
           "change password", "subway map", "bus schedule", "air quality", "translate", "calculator",
           "passport photo", "customer service number", "time zone converter"],
}
SITES = {
    "ko": ["네이버", "다음", "카카오", "카카오맵", "유튜브", "지메일", "인스타그램", "넷플릭스", "쿠팡", "배민", "요기요"],
    "en": ["naver", "daum", "kakao", "youtube", "gmail", "google", "instagram", "facebook", "netflix", "coupang",
           "amazon", "twitter"],
}
SITE_SUFFIXES = {"ko": ["", " 로그인", " 홈페이지", " 바로가기"], "en": ["", " login", " sign in", " homepage"]}
SHARES = {"interest": 0.6, "two": 0.1, "task": 0.2, "site": 0.1}
TYPO_SHARE = 0.15


def typo(rnd: random.Random, text: str) -> str:
    """A slip people make: a space dropped (Korean), or a letter dropped, doubled or swapped (Latin script)."""
    if not text.isascii():
        return text.replace(" ", "", 1) if " " in text else text
    words = text.split(" ")
    i = max(range(len(words)), key=lambda j: len(words[j]))
    word = words[i]
    if len(word) < 4:
        return text
    k = rnd.randrange(1, len(word) - 1)
    edit = rnd.choice(("drop", "double", "swap"))
    words[i] = (word[:k] + word[k + 1:] if edit == "drop" else word[:k] + word[k] + word[k:] if edit == "double"
                else word[:k - 1] + word[k] + word[k - 1] + word[k + 1:])
    return " ".join(words)


class QueryPool:
    def __init__(self, taxonomy: Taxonomy, seed: int):
        self.rnd = random.Random(seed)
        self.topics = [t for t in taxonomy.tags if t.aspect in ("topic", "menu") and (t.ko or t.en)]
        self.destinations = [t for t in taxonomy.tags if t.top == "travel" and "/" in t.path]

    def write(self, n: int) -> list[str]:
        """``n`` queries (duplicates removed, so possibly fewer), in a reproducible order."""
        kinds = self.rnd.choices(list(SHARES), weights=list(SHARES.values()), k=n)
        texts = [getattr(self, f"_{kind}")(self.rnd.choice(("ko", "en"))) for kind in kinds]
        texts = [typo(self.rnd, t) if self.rnd.random() < TYPO_SHARE else t for t in texts]
        return list(dict.fromkeys(t.strip() for t in texts if t.strip()))

    def _form(self, tag: Tag, language: str) -> str:
        return self.rnd.choice(tag.surface(language) or tag.surface("en" if language == "ko" else "ko"))

    def _interest(self, language: str) -> str:
        tag = self.rnd.choice(self.topics)
        family = tag.top if tag.top in PHRASES[language] else "any"
        template = self.rnd.choice(PHRASES[language][family] + PHRASES[language]["any"])
        return template.replace("{kw}", self._form(tag, language))

    def _two(self, language: str) -> str:
        first, second = self.rnd.sample(self.topics, 2)
        return f"{self._form(first, language)} {self._form(second, language)}"

    def _task(self, language: str) -> str:
        if self.rnd.random() < 0.6:
            return self.rnd.choice(TASKS[language]).replace("{kw}", self._form(self.rnd.choice(self.destinations), language))
        return self.rnd.choice(PLAIN_TASKS[language])

    def _site(self, language: str) -> str:
        return self.rnd.choice(SITES[language]) + self.rnd.choice(SITE_SUFFIXES[language])
