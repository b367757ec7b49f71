"""Query readers that need no model at query time: the cue-and-form rules, and the distilled student.

Both answer through the one :class:`~hybridrec.models.extraction.QueryTagger` interface with the one
:class:`~.schema.QueryTags` type, like the offline and generative backends, so the stream, distill
and serving share one vocabulary (:mod:`.cues`, the taxonomy) and one type.

An interest query keeps its own words as its keyword, whether or not the taxonomy names it ("frieren
season 2", "롤 월드컵"): the user context folds them and serving finds items by them (BM25).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hybridrec.contract import QueryIntent
from hybridrec.models.extraction.cues import NAVIGATION_CUE, SITE_QUERY, UTILITY_CUE
from hybridrec.models.extraction.schema import AnswerDoc, Outcome, QueryTags
from hybridrec.models.student import QueryStudent
from hybridrec.taxonomy import LANGUAGES, Taxonomy, load_taxonomy

MAX_FORM_WORDS = 4
MIN_PREFIX_CHARS = 2
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORD = re.compile(r"[^\s,.!?#\"'()]+")


def query_keyword(text: str, max_chars: int) -> tuple[str, ...]:
    """The folded query as one keyword, cut at a word boundary to ``max_chars``; none when empty."""
    folded = " ".join(text.casefold().split())
    while len(folded) > max_chars and " " in folded:
        folded = folded.rsplit(" ", 1)[0]
    return (folded[:max_chars],) if folded else ()


class RuleQueryReader:
    """The shared cue words first (a lookup is utility, a login or a bare site name navigational);
    otherwise the taxonomy's forms, longest phrase first, in either language. A Korean word with a
    particle attached ("국밥이") grounds through its longest known prefix. Anything else is an interest,
    with no tag when the taxonomy does not name it (an anime, a car) but with its words."""

    backend = "rules"

    def __init__(self, taxonomy: Taxonomy | None = None, max_keyword_chars: int = 40):
        self.taxonomy = taxonomy or load_taxonomy()
        self.max_keyword_chars = max_keyword_chars

    def tag_many(self, queries: Sequence[tuple[str, Sequence[AnswerDoc]]]) -> list[Outcome[QueryTags]]:
        return [Outcome(self.read(text)) for text, _ in queries]

    def read(self, text: str) -> QueryTags:
        folded = " ".join(text.casefold().split())
        if UTILITY_CUE.search(folded):
            return QueryTags(intent=QueryIntent.UTILITY)
        tags = self._ground(_WORD.findall(folded))
        if NAVIGATION_CUE.search(folded) or not folded or (not tags and SITE_QUERY.search(folded)):
            return QueryTags(intent=QueryIntent.NAVIGATIONAL)
        return QueryTags(intent=QueryIntent.INTEREST, tags=tags, keywords=query_keyword(folded, self.max_keyword_chars))

    def ground(self, text: str) -> tuple[str, ...]:
        """Every tag whose surface form the text contains, whatever the query was for."""
        return self._ground(_WORD.findall(text.casefold()))

    def _lookup(self, form: str) -> str | None:
        for language in LANGUAGES:
            tag = self.taxonomy.lookup(form, language)
            if tag is not None:
                return tag.path
        return None

    def _ground(self, words: list[str]) -> tuple[str, ...]:
        found: list[str] = []
        i = 0
        while i < len(words):
            for n in range(min(MAX_FORM_WORDS, len(words) - i), 0, -1):
                path = self._lookup(" ".join(words[i:i + n]))
                if path is None and n == 1 and _HANGUL.search(words[i]):
                    path = self._lookup_prefix(words[i])
                if path is not None:
                    if path not in found:
                        found.append(path)
                    i += n
                    break
            else:
                i += 1
        return tuple(found)

    def _lookup_prefix(self, word: str) -> str | None:
        for end in range(len(word) - 1, MIN_PREFIX_CHARS - 1, -1):
            path = self._lookup(word[:end])
            if path is not None:
                return path
        return None


class StudentQueryReader:
    """The distilled query student (``hybridrec distill``): tens of microseconds per query."""

    backend = "student"

    def __init__(self, student: QueryStudent, max_keyword_chars: int = 40):
        self.student = student
        self.identity = f"student|{student.header.get('run_id')}"
        self.max_keyword_chars = max_keyword_chars

    def tag_many(self, queries: Sequence[tuple[str, Sequence[AnswerDoc]]]) -> list[Outcome[QueryTags]]:
        out = []
        for text, _ in queries:
            found = self.student.predict(text)
            keywords = query_keyword(text, self.max_keyword_chars) if found.intent is QueryIntent.INTEREST else ()
            out.append(Outcome(QueryTags(intent=found.intent, tags=found.tags, keywords=keywords,
                                         confidence=round(min(max(found.confidence, 0.0), 1.0), 4))))
        return out
