"""Candidate keyword phrases of a text, and MMR to pick a relevant yet diverse few of them.

Candidates are always substrings of the text, so they are grounded by construction:

* taxonomy surface forms found in the text (:class:`Gazetteer`), longest first, at word starts, so
  Korean particles may follow ("국밥이") but "국밥" is not found inside "순대국밥";
* Korean noun phrases and adjective + noun phrases from Kiwi's morphological analysis;
* English word n-grams (1-3) between stop words and punctuation;
* Chinese and Japanese: runs of katakana (loanword nouns: ラーメン) and of Han characters between
  kana, punctuation and common Chinese function characters; a long run gives its 2-3 character
  windows. Without a segmenter these are rough, but a text in those scripts yields keywords, not
  nothing, and MMR picks the relevant ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

from hybridrec.models.extraction.opinions import NOT_SERVICE_SPEED_AFTER, SPEED_WORDS, OpinionReader
from hybridrec.taxonomy import Tag, Taxonomy

HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORDLIKE = re.compile(r"[\uac00-\ud7a3a-z0-9]")
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_KATAKANA_RUN = re.compile(r"[\u30a1-\u30fa\u30fc]{2,}")
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]{2,}")
# Chinese characters that mostly glue words together (particles, copulas, degree words, demonstratives)
_ZH_FUNCTION = re.compile(r"[的了很也是在和都就还有这那个家点把被给对比较非常太真又不没吗呢吧啊我你他她它们]+")
_HAN_WORD_MAX = 4
_EN_WORD = re.compile(r"[a-z][a-z'’\-]*[a-z]|[a-z]")
_EN_BREAK = re.compile(r"[^a-z'’\-\s]+")
MAX_CANDIDATES = 64

EN_STOPWORDS = frozenset("""
a about above after again against all also always am an and any are as at back be because been before being
below best better between both but by came can cannot come could definitely did do does doing done down during
each even ever every few first for from get go going got great good had has have having he her here hers
him his how i if in into is it its itself just last like little lot lots loved made make many me more most
much must my myself never next nice no nor not now of off ok okay on once one only or other our ours out over
own perfect place pretty quite rather really said same say see she should so some still such sure than that
the their them then there these they thing things this those though through time to too took two under until
up us very want was way we well went were what when where which while who why will with would yet you your
ordered order try tried say says told asked eat ate food's it's i'm i've we've they're don't didn't wasn't
isn't can't won't would've you'll we'll i'll there's that's what's overall highly super bit right used past true
via whatever soon anytime glad else around away enough maybe probably already almost instead another anyway
since without within though although however usually often sometimes either neither etc lol wow yes yeah
""".split())
# Without a part-of-speech model for English, single words that read as adverbs or past verbs are skipped.
_EN_NOT_A_NOUN = re.compile(r".{3,}(ly|ed)$")
KO_STOP_NOUNS = frozenset("것 곳 수 때 등 거 점 정도 진짜 정말 너무 이번 다음 오늘 내일 생각 느낌 하나 사람 우리 저 제 뭐 좀 그냥 다시".split())
_KO_NOUN = ("NNG", "NNP", "SL")


@dataclass(frozen=True)
class Candidate:
    text: str  # exactly as in the cleaned text, case-folded
    tag: Tag | None = None  # set for taxonomy surface forms found verbatim or by their Korean stems
    negated: bool = False  # the text denies it ("not cozy", "조용하지 않아요"): a keyword, never a tag


# A form denied by the words just before it ("not cozy", "wasn't cheap", "never quiet").
_EN_NEGATED_BEFORE = re.compile(r"(?:\b(?:not|no|never|hardly|barely)|n't)\s+(?:\w+\s+){0,2}$")
# Wished for or said of another place: "I wish it had a rooftop", "unlike next door's patio", "루프탑이 있었으면",
# "옆집은 테라스가 있는데", "루프탑 말고".
_NOT_THIS_PLACE_BEFORE = re.compile(r"(\bwish\b|\bif only\b|would be nice|\bunlike\b|next door|옆집|다른 곳|다른 데)[^.!?]{0,40}$")
_NOT_THIS_PLACE_AFTER = re.compile(r"[^.!?\s]{0,4}\s?(?:이|가)?\s?(?:있었으면|었으면|였으면|했으면|면 좋겠|말고)")
_KO_NEGATED_AFTER = re.compile(r"[\uac00-\ud7a3]{0,3}\s*(?:없|아니|안\s|않)")  # "주차장이 없어요"
_KO_NEGATION_AFTER = {("않", "VX"), ("없", "VA"), ("아니", "VCN")}
_KO_NEGATION_BEFORE = {("안", "MAG"), ("못", "MAG"), ("불", "XPN")}  # 불 of 불친절, 불편
_KO_CONTENT = ("NNG", "NNP", "XR", "VA", "VV")


class Gazetteer:
    """Every ko/en surface form of the taxonomy, matched in one pass."""

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy
        forms: dict[str, Tag] = {}
        for tag in taxonomy.tags:
            for form in tag.recognised_forms:
                forms.setdefault(form.casefold(), tag)
        self._tags = forms
        self._by_path = {tag.path: tag for tag in taxonomy.tags}
        self.opinions = OpinionReader(taxonomy)
        alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        # Start of a word on the left; on the right a non-letter for Latin forms (no "parking" in
        # "parkings" is fine either way), anything for Hangul (particles attach to nouns).
        self._pattern = re.compile(rf"(?<![\w])({alternatives})(?=[^a-z]|$)")

        # Korean forms by their stems, so predicative and honorific forms match the listed adnominal one:
        # "친절한" is 친절+하, found in "친절하시고" and "친절해요"; "가성비 좋은" in "가성비가 정말 좋아요".
        self._stems: dict[tuple[str, ...], Tag] = {}
        for form, tag in forms.items():
            if HANGUL.search(form):
                units = _korean_units(form, kinds=True)
                stems = tuple(u.form for u in units)
                # Only forms with an adjective (nouns are found verbatim, particles and all), and not a
                # lone verb ("빨리 나와" is 나오, which is in every "나오는").
                if any(u.kind == "VA" for u in units):
                    self._stems.setdefault(stems, tag)

    def find(self, folded_text: str, tokens=None) -> list[Candidate]:
        """``tokens``: Kiwi's tokens of a Korean text when the caller has them (the analysis runs once)."""
        found: dict[str, Candidate] = {}
        for match in self._pattern.finditer(folded_text):
            form = match.group(1)
            negated = bool(_KO_NEGATED_AFTER.match(folded_text, match.end())) if HANGUL.search(form) \
                else bool(_EN_NEGATED_BEFORE.search(folded_text[:match.start()]))
            negated = negated or _not_this_place(folded_text, match.start(), match.end())
            if form in SPEED_WORDS and NOT_SERVICE_SPEED_AFTER.match(folded_text, match.end()):
                continue
            if form not in found or found[form].negated:
                found[form] = Candidate(form, self._tags[form], negated)
        if HANGUL.search(folded_text):
            tokens = tokens if tokens is not None else _kiwi().tokenize(folded_text)
            for candidate in self._find_korean_stems(folded_text, tokens):
                if not any(c.tag == candidate.tag for c in found.values()):
                    found.setdefault(candidate.text, candidate)
        # what the text says of the staff or the prices, where no listed form names the aspect
        for span, path in self.opinions.read(folded_text, tokens):
            tag = self._by_path[path]
            if not any(c.tag == tag and not c.negated for c in found.values()) and span not in found:
                found[span] = Candidate(span, tag, _not_this_place(folded_text, folded_text.find(span),
                                                                   folded_text.find(span) + len(span)))
        return list(found.values())

    def _find_korean_stems(self, folded_text: str, tokens=None) -> list[Candidate]:
        """Listed Korean forms found by their stems, each as the words it spans, negation read after it."""
        tokens = tokens if tokens is not None else _kiwi().tokenize(folded_text)
        units = _korean_units(folded_text, tokens)
        out = []
        for stems, tag in self._stems.items():
            n = len(stems)
            for i in range(len(units) - n + 1):
                if tuple(u.form for u in units[i:i + n]) != stems:
                    continue
                start, end = units[i].start, units[i + n - 1].end
                word_end = folded_text.find(" ", end)
                text = folded_text[start: word_end if word_end >= 0 else len(folded_text)].strip(" .,!?~")
                negated = _korean_negated(tokens, units[i].first_token, units[i + n - 1].last_token)
                out.append(Candidate(text, tag, negated or _not_this_place(folded_text, start, end)))
        return out

    def tag_of(self, phrase: str) -> Tag | None:
        return self._tags.get(phrase.casefold())


@dataclass(frozen=True)
class _Unit:
    """A Korean content word: a noun, or a predicate stem with its 하 ("친절하", "조용하", "비싸")."""

    form: str
    start: int
    end: int
    first_token: int
    last_token: int
    kind: str = ""


def _korean_units(text: str, tokens=None, kinds: bool = False) -> list[_Unit]:
    tokens = tokens if tokens is not None else _kiwi().tokenize(text)
    units: list[_Unit] = []
    for i, tok in enumerate(tokens):
        if tok.tag == "XSA" and tok.form == "하" and units and units[-1].last_token == i - 1:
            last = units[-1]
            units[-1] = _Unit(last.form + "하", last.start, tok.start + tok.len, last.first_token, i, "VA")
        elif tok.tag in _KO_CONTENT:
            units.append(_Unit(tok.form, tok.start, tok.start + tok.len, i, i, tok.tag if kinds else ""))
    return units


def _not_this_place(text: str, start: int, end: int) -> bool:
    return bool(_NOT_THIS_PLACE_BEFORE.search(text[max(0, start - 60):start]) or _NOT_THIS_PLACE_AFTER.match(text, end))


def _korean_negated(tokens, first: int, last: int) -> bool:
    """안/못/불- just before, or 않/없/아니 in the endings right after ("조용하지 않아요", "친절하지 않았어요")."""
    if first > 0 and (tokens[first - 1].form, tokens[first - 1].tag) in _KO_NEGATION_BEFORE:
        return True
    for tok in tokens[last + 1: last + 6]:
        if (tok.form, tok.tag) in _KO_NEGATION_AFTER:
            return True
        if tok.tag == "SF" or tok.tag in _KO_CONTENT:  # the next statement or the next content word
            break
    return False


@cache
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=1)


def korean_phrases(text: str, tokens=None) -> list[str]:
    """Noun runs ("순대 국밥", "무료 와이파이") and adjective + noun ("아늑한 분위기"), as written."""
    phrases: list[str] = []
    run_start = run_end = adjective_start = -1
    previous: list = []  # the two tokens before the current one
    for tok in (tokens if tokens is not None else _kiwi().tokenize(text)):
        if tok.tag in _KO_NOUN and not (tok.tag == "NNG" and tok.form in KO_STOP_NOUNS):
            if run_start < 0:
                run_start = tok.start if adjective_start < 0 else adjective_start
            run_end = tok.start + tok.len
        else:
            if run_start >= 0:
                phrases.append(text[run_start:run_end])
            run_start = -1
            adjective_start = _adjective_start(tok, previous)
        previous = [*previous[-1:], tok]
    if run_start >= 0:
        phrases.append(text[run_start:run_end])
    heads = [p.split()[-1] for p in phrases if " " in p]  # "아늑한 분위기" -> "분위기" as well
    return [p for p in phrases + heads if len(p) >= 2 and _WORDLIKE.search(p)]  # not "ㅋㅋ" or "ㅠㅠ"


def _adjective_start(tok, previous: list) -> int:
    """Where an adnominal adjective ("조용한" = 조용/XR 하/XSA ㄴ/ETM, "좋은" = 좋/VA 은/ETM) began, or -1."""
    if tok.tag != "ETM" or not previous:
        return -1
    if previous[-1].tag == "VA":
        return previous[-1].start
    if previous[-1].tag == "XSA" and len(previous) == 2 and previous[0].tag == "XR":
        return previous[0].start
    return -1


def english_phrases(text: str, max_words: int = 3) -> list[str]:
    """Word n-grams inside runs of content words (stop words and punctuation break a run)."""
    phrases = []
    for segment in _EN_BREAK.split(text):
        run: list[str] = []
        for word in [*_EN_WORD.findall(segment), ""]:
            if word and word not in EN_STOPWORDS and len(word) > 1:
                run.append(word)
                continue
            phrases.extend(w for w in run if not _EN_NOT_A_NOUN.match(w))
            for n in range(2, min(max_words, len(run)) + 1):
                phrases.extend(" ".join(run[i:i + n]) for i in range(len(run) - n + 1))
            run = []
    return phrases


def cjk_phrases(text: str) -> list[str]:
    """Katakana runs, and Han runs split at Chinese function characters: a piece of 2-4 characters as
    it is, a longer one as its 2- and 3-character windows."""
    phrases = _KATAKANA_RUN.findall(text)
    japanese = bool(_KANA.search(text))  # kana break Japanese runs already; 和牛 and 有名 are words there
    for run in _HAN_RUN.findall(text):
        for piece in ([run] if japanese else _ZH_FUNCTION.split(run)):
            if 2 <= len(piece) <= _HAN_WORD_MAX:
                phrases.append(piece)
            elif len(piece) > _HAN_WORD_MAX:
                phrases += [piece[i:i + n] for n in (2, 3) for i in range(len(piece) - n + 1)]
    return phrases


def candidates(folded_text: str, gazetteer: Gazetteer, max_chars: int | None = None) -> list[Candidate]:
    """Taxonomy forms first, then other phrases by how often they occur (ties: first seen); with
    ``max_chars``, only those a keyword may be (the teacher and the review student read the same)."""
    tokens = _kiwi().tokenize(folded_text) if HANGUL.search(folded_text) else None  # Kiwi once per text
    found = gazetteer.find(folded_text, tokens)
    known = {c.text for c in found}
    phrases = korean_phrases(folded_text, tokens) if tokens is not None else []
    phrases += english_phrases(folded_text)
    if CJK.search(folded_text):
        phrases += cjk_phrases(folded_text)
    counts: dict[str, int] = {}
    for phrase in phrases:
        if phrase not in known and phrase in folded_text and not _only_inside(phrase, found, folded_text):
            counts[phrase] = counts.get(phrase, 0) + 1
    ranked = sorted(counts, key=lambda p: -counts[p])
    found += [Candidate(p) for p in ranked[: MAX_CANDIDATES - len(found)]]
    return found if max_chars is None else [c for c in found if len(c.text) <= max_chars]


def _only_inside(phrase: str, forms: list[Candidate], folded_text: str) -> bool:
    """True when every occurrence of ``phrase`` is part of a surface form found in the text ("모임" of
    "가족 모임", "파스타" of "라구 파스타"): it is that mention again, not a mention of its own."""
    inside = sum(folded_text.count(f.text) * f.text.count(phrase) for f in forms if phrase in f.text)
    return inside >= folded_text.count(phrase)


def mmr(doc: np.ndarray, phrases: np.ndarray, k: int, diversity: float, anchored: Iterable[int] = ()) -> list[int]:
    """Maximal marginal relevance: indices of up to ``k`` rows, ``anchored`` ones first.

    Each next pick maximises ``(1 - diversity) * sim(doc) - diversity * max sim(already picked)``,
    so a second phrasing of the same thing loses to a phrase about something else.
    """
    relevance = phrases @ doc
    picked = sorted(anchored, key=lambda i: -relevance[i])[:k]
    remaining = [i for i in range(len(phrases)) if i not in set(picked)]
    while remaining and len(picked) < k:
        if picked:
            redundancy = (phrases[remaining] @ phrases[picked].T).max(axis=1)
        else:
            redundancy = np.zeros(len(remaining))
        scores = (1 - diversity) * relevance[remaining] - diversity * redundancy
        picked.append(remaining.pop(int(np.argmax(scores))))
    return picked
