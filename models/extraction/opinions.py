"""Aspect opinions: what a review says of the staff or the prices, read as a place aspect.

Reviews rarely use a tag's own words. They name a target (the staff, the service, the prices; 직원,
사장님, 가격) and say something of it in the same clause ("the staff are sweet", "prices are
significantly higher", "가격이 만만치 않음", "사장님이 하나하나 신경 써주심"). The same opinion word means
different aspects for different targets: "great" staff is friendliness, "great" prices a bargain,
a "quick" order fast service. So each target family has its own opinion words, and a pair counts
only inside one clause (a full stop, a comma, "but" or 지만/근데 ends it). A denied opinion
("not friendly", "착하진 않아요", "불친절") asserts nothing. These are general words of how people judge
service and price, chosen by aspect-based sentiment practice, not copied from any evaluation text.

The candidate's text is the span from target to opinion as written, so it is grounded like every
other candidate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hybridrec.taxonomy import Taxonomy

FRIENDLY, SLOW, FAST = "service/friendly", "service/slow", "service/fast"
LIVELY = "mood/lively"
CHEAP, MODERATE, EXPENSIVE = "price/cheap", "price/moderate", "price/expensive"


# "fast food", "a quick bite", "quick breakfast": the kind of meal or visit, not how fast the service was.
SPEED_WORDS = frozenset({"fast", "quick"})
NOT_SERVICE_SPEED_AFTER = re.compile(r"\s+(?:food|foods|bite|breakfast|lunch|dinner|snack|meal|stop|visit|trip|look|"
                                     r"question|fix|glance|drive|read|note)\b")


@dataclass(frozen=True)
class OpinionFamily:
    targets: frozenset[str]
    opinions: dict[str, str]  # opinion word (English word, or Korean stem) -> tag path
    before: int = 1  # English: how far before its target an opinion may stand ("friendly staff", "great prices")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_PRAISE_EN = "friendly nice kind sweet great amazing awesome excellent wonderful fantastic outstanding stellar " \
             "lovely attentive helpful welcoming pleasant courteous polite knowledgeable accommodating good superb " \
             "warm phenomenal incredible professional"
EN_FAMILIES = (
    OpinionFamily(_words("service staff staffs server servers waiter waiters waitress waitresses waitstaff owner "
                         "owners bartender bartenders host hostess employees employee crew manager cashier barista "
                         "baristas chef guide shopkeeper stylist mechanic technician"),
                  {**dict.fromkeys(_PRAISE_EN.split(), FRIENDLY), "slow": SLOW, "quick": FAST, "fast": FAST,
                   "prompt": FAST, "efficient": FAST, "speedy": FAST}),
    OpinionFamily(_words("food order orders meal drinks dishes wait"),
                  {"quick": FAST, "fast": FAST, "quickly": FAST, "promptly": FAST, "slow": SLOW, "forever": SLOW},
                  before=0),  # "fast food", "a quick meal" name a kind of meal: speed is said after ("came fast")
    OpinionFamily(_words("place bar restaurant room patio crowd lunch dinner night weekend saturday friday it"),
                  dict.fromkeys("packed busy crowded loud noisy hopping buzzing bumping slammed".split(), LIVELY)),
    OpinionFamily(_words("price prices pricing cost costs deal deals"),
                  {**dict.fromkeys("low cheap great amazing unbeatable awesome excellent incredible good".split(),
                                   CHEAP),
                   **dict.fromkeys("fair reasonable decent ok okay average moderate".split(), MODERATE),
                   **dict.fromkeys("high higher steep expensive pricey crazy outrageous ridiculous insane hefty "
                                   "inflated".split(), EXPENSIVE)}),
)
KO_FAMILIES = (
    OpinionFamily(_words("직원 사장 서비스 응대 알바 알바생 종업원 서버 셰프 바텐더 이모 주인 주인장 매니저 점원"),
                  {**dict.fromkeys("친절 좋 최고 훌륭 상냥 다정 세심 꼼꼼 따뜻".split(), FRIENDLY),
                   "느리": SLOW, "빠르": FAST}),
    OpinionFamily(_words("음식 주문 웨이팅 메뉴 요리 서빙"),
                  {**dict.fromkeys("한참 기다리 늦 오래".split(), SLOW), "금방": FAST}),
    OpinionFamily(_words("사람 손님 음악 매장 가게 학생 분위기"),
                  dict.fromkeys("많 시끄럽 바글바글 북적 신나 크".split(), LIVELY)),
    OpinionFamily(_words("가격 값 가격대 금액 요금"),
                  {**dict.fromkeys("착하 저렴 싸".split(), CHEAP),
                   **dict.fromkeys("괜찮 적당 합리 무난".split(), MODERATE),
                   **dict.fromkeys("비싸 사악 부담 오르 높 세".split(), EXPENSIVE)}),
)
# "가격이 만만치 않다" (not easy on the wallet) is expensive only when denied.
_KO_EXPENSIVE_WHEN_DENIED = {"만만"}
# Staff who did something for the guest ("설명해 주셨어요", "신경 써주심"): the benefactive auxiliary 주.
_KO_BENEFACTIVE = ("주", "VX")
_KO_OPINION_TAGS = {"VA", "VV", "XR", "NNG"}
_KO_CLAUSE_END = {"SF", "SP", "SE"}
_KO_CONTRAST = re.compile(r"지만|는데|ㄴ데|은데|데$")
_KO_WINDOW = 14  # tokens from target to opinion (a Korean clause is long in morphemes)

_EN_CLAUSE = re.compile(r"[.!?;:\n,()]+|\b(?:but|although|though|however|except|while)\b")
_EN_WORD = re.compile(r"[a-z][a-z'’\-]*")
_EN_NEGATION = re.compile(r"^(?:not|no|never|hardly|barely|nothing|without)$|n[’']t$")
_EN_WINDOW = 6  # words from the target to an opinion after it ("the staff is generally stellar")
# A wait measured in minutes or hours is slow service: "waited 40 minutes", "took over an hour".
_EN_LONG_WAIT = re.compile(r"\b(?:wait(?:ed|ing)?|took|takes)\s+(?:for\s+)?(?:over\s+|about\s+|almost\s+|nearly\s+|"
                           r"another\s+|at least\s+)?(?:\d+|an?|one|two|three|forty|thirty|twenty)\s*\+?\s*"
                           r"(?:min|mins|minutes|hour|hours|hrs)\b")


@dataclass(frozen=True)
class Opinion:
    start: int
    end: int
    tag: str


def english_opinions(folded_text: str) -> list[Opinion]:
    found = []
    start = 0
    for clause_end in [*(m.start() for m in _EN_CLAUSE.finditer(folded_text)), len(folded_text)]:
        words = [(m.group(0).strip("'’-"), m.start(), m.end())
                 for m in _EN_WORD.finditer(folded_text, start, clause_end)]
        start = clause_end
        for family in EN_FAMILIES:
            targets = [i for i, (w, _, _) in enumerate(words) if w in family.targets]
            for t in targets:
                for o in range(max(0, t - family.before), min(len(words), t + _EN_WINDOW + 1)):
                    tag = family.opinions.get(words[o][0])
                    if tag is None or o == t or _en_denied(words, o) or (
                            words[o][0] in SPEED_WORDS and NOT_SERVICE_SPEED_AFTER.match(folded_text, words[o][2])):
                        continue
                    first, last = min(t, o), max(t, o)
                    found.append(Opinion(words[first][1], words[last][2], tag))
                    break
    found += [Opinion(m.start(), m.end(), SLOW) for m in _EN_LONG_WAIT.finditer(folded_text)]
    return found


def _en_denied(words: list[tuple[str, int, int]], at: int) -> bool:
    return any(_EN_NEGATION.search(w) for w, _, _ in words[max(0, at - 3):at])


def korean_opinions(folded_text: str, tokens) -> list[Opinion]:
    found = []
    for family in KO_FAMILIES:
        for t, tok in enumerate(tokens):
            if tok.tag not in ("NNG", "NNP") or tok.form not in family.targets:
                continue
            for o in range(t + 1, min(len(tokens), t + _KO_WINDOW + 1)):
                cur = tokens[o]
                if cur.tag in _KO_CLAUSE_END or (cur.tag == "EC" and _KO_CONTRAST.search(cur.form)) or cur.tag == "MAJ":
                    break
                tag = _korean_tag(family, tokens, o)
                if tag is None:
                    continue
                if tag != "denied":
                    found.append(_korean_span(folded_text, tok.start, cur.start, cur.start + cur.len, tag))
                break
    return [o for o in found if o.end > o.start]


def _korean_span(text: str, target_start: int, opinion_start: int, opinion_end: int, tag: str) -> Opinion:
    """From the target to the end of the opinion's word, but at most that word and the one before it
    ("신경 써주심", "가격이 만만치"), trimmed of trailing punctuation."""
    end = text.find(" ", opinion_end)
    end = len(text) if end < 0 else end
    word_start = text.rfind(" ", 0, opinion_start) + 1
    previous_start = text.rfind(" ", 0, max(word_start - 1, 0)) + 1
    start = max(target_start, previous_start) if word_start > target_start else target_start
    return Opinion(start, _trim_end(text, start, end), tag)


def _korean_tag(family: OpinionFamily, tokens, o: int) -> str | None:
    """The opinion's tag at token ``o``; "denied" when it is an opinion the text denies; None when no opinion."""
    from hybridrec.models.extraction.candidates import _korean_negated  # one reading of Korean negation

    tok = tokens[o]
    denied = _korean_negated(tokens, o, o)
    if tok.form in _KO_EXPENSIVE_WHEN_DENIED and EXPENSIVE in family.opinions.values():
        return EXPENSIVE if denied else None
    if (tok.form, tok.tag) == _KO_BENEFACTIVE and FRIENDLY in family.opinions.values():
        return FRIENDLY
    if tok.tag not in _KO_OPINION_TAGS or tok.form not in family.opinions:
        return None
    return "denied" if denied else family.opinions[tok.form]


def _trim_end(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in " .,!?~…":
        end -= 1
    return end


class OpinionReader:
    """Aspect opinions of a case-folded text as (span, tag) pairs of the taxonomy's tags."""

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy
        wanted = {tag for family in (*EN_FAMILIES, *KO_FAMILIES) for tag in family.opinions.values()}
        missing = sorted(tag for tag in wanted if tag not in taxonomy)
        if missing:
            raise ValueError(f"opinion tags missing from the taxonomy: {missing}")

    def read(self, folded_text: str, tokens=None) -> list[tuple[str, str]]:
        opinions = english_opinions(folded_text)
        if tokens is not None:
            opinions += korean_opinions(folded_text, tokens)
        return [(folded_text[o.start:o.end], o.tag) for o in opinions]
