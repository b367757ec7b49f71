"""The one list of query cue words: what makes a search a lookup (utility) or a way to a site (navigational).

Every query tagger reads these (the offline teacher, the stream's rule tagger, the generative
teacher's offline vote), so "login" means the same thing everywhere. Cues are high-precision
shortcuts, not the whole judgement: the offline reader also reads intent from meaning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Things people look up rather than want a feed about. Latin cues match whole words, Hangul cues anywhere.
UTILITY_CUES = (
    "visa", "visas", "exchange rate", "currency", "converter", "weather", "forecast", "temperature", "embassy",
    "consulate", "time zone", "time difference", "delivery tracking", "track package", "tracking number",
    "password", "subway map", "bus schedule", "train schedule", "timetable", "usd", "krw", "eur", "jpy",
    "translate", "calculator", "customer service", "passport", "air quality", "fine dust", "tax refund",
    "비자", "환율", "날씨", "기온", "일기예보", "대사관", "영사관", "시차", "택배", "배송 조회", "송장", "비밀번호",
    "노선도", "시간표", "미세먼지", "번역", "계산기", "여권", "고객센터", "전화번호", "환불",
)
# Wanting to reach a site or an app: a strong cue wins over tags ("youtube login"), a site name alone does not
# ("youtube cooking" is about cooking).
NAVIGATION_STRONG_CUES = ("login", "log in", "sign in", "homepage", "official site", "www", ".com", "로그인",
                          "홈페이지", "바로가기", "공식 사이트")
SITE_NAMES = ("naver", "daum", "kakao", "kakaomap", "kakaotalk", "youtube", "gmail", "google", "google maps",
              "instagram", "facebook", "twitter", "netflix", "coupang", "amazon", "baemin", "yogiyo", "네이버",
              "다음", "카카오", "카카오맵", "카카오톡", "유튜브", "지메일", "구글", "인스타그램", "페이스북", "넷플릭스",
              "쿠팡", "배민", "요기요", "네이버 메일")


def _cue_pattern(cues: Sequence[str]) -> re.Pattern[str]:
    latin = [re.escape(c) for c in cues if c.isascii()]
    hangul = [re.escape(c) for c in cues if not c.isascii()]
    parts = [rf"(?<![a-z0-9])(?:{'|'.join(latin)})(?![a-z0-9])"] if latin else []
    return re.compile("|".join(parts + hangul))


UTILITY_CUE = _cue_pattern(UTILITY_CUES)
NAVIGATION_CUE = _cue_pattern(NAVIGATION_STRONG_CUES)
SITE_QUERY = re.compile(rf"^(?:{'|'.join(re.escape(s) for s in sorted(SITE_NAMES, key=len, reverse=True))})(?:\s|$)")
