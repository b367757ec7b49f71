"""What a search query says about the user: its intent and the interest tags it names.

The user context keeps tags only from interest queries: someone who looks up the exchange rate for
Peru is not (necessarily) interested in travelling to South America. Three taggers sit behind
:class:`QueryTagger`, ``streaming.query_tagger`` picks one (:func:`make_query_tagger`): the
distilled student (the default: it learned the teacher's judgement and runs in tens of
microseconds), :class:`RuleQueryTagger` (taxonomy surface forms and the shared cue words, no training)
and the keyword-extraction stage's tagger itself (the teacher: milliseconds per query).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import NamedTuple, Protocol

from hybridrec.config import Settings
from hybridrec.contract import QueryIntent
from hybridrec.models.extraction.cues import NAVIGATION_CUE, SITE_QUERY, UTILITY_CUE
from hybridrec.taxonomy import LANGUAGES, Taxonomy, load_taxonomy


log = logging.getLogger(__name__)


class QueryTags(NamedTuple):
    intent: QueryIntent
    tags: tuple[str, ...]  # taxonomy paths; empty unless the intent is interest


class QueryTagger(Protocol):
    def tag(self, text: str) -> QueryTags: ...


MAX_FORM_WORDS = 4
MIN_PREFIX_CHARS = 2
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORD = re.compile(r"[^\s,.!?#\"'()]+")


class RuleQueryTagger:
    """The shared cue words first (:mod:`hybridrec.models.extraction.cues`: a lookup is utility, a login
    or a bare site name navigational); otherwise the taxonomy's forms, longest phrase first, in either
    language. A Korean word with a particle attached ("국밥이") grounds through its longest known
    prefix. Anything else is an interest, with no tag when the taxonomy does not name it (an anime,
    a car): nothing to add to the context, but no lookup either."""

    def __init__(self, taxonomy: Taxonomy | None = None):
        self.taxonomy = taxonomy or load_taxonomy()

    def tag(self, text: str) -> QueryTags:
        folded = " ".join(text.casefold().split())
        if UTILITY_CUE.search(folded):
            return QueryTags(QueryIntent.UTILITY, ())
        tags = self._ground(_WORD.findall(folded))
        if NAVIGATION_CUE.search(folded) or not folded or (not tags and SITE_QUERY.search(folded)):
            return QueryTags(QueryIntent.NAVIGATIONAL, ())
        return QueryTags(QueryIntent.INTEREST, tags)

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


class ExtractionQueryTagger:
    """The keyword-extraction stage's tagger (``extraction.backend``) in this interface. A query whose
    tagging is rejected by that stage's validation contributes no tags."""

    def __init__(self, settings: Settings):
        from hybridrec.models.extraction import make_query_tagger

        self._tagger = make_query_tagger(settings)

    def tag(self, text: str) -> QueryTags:
        from hybridrec.models.extraction import RejectedOutput

        try:
            tagged = self._tagger.tag(text)
        except RejectedOutput as rejected:
            log.warning("query %r not tagged: %s", text[:80], rejected)
            return QueryTags(QueryIntent.NAVIGATIONAL, ())
        return QueryTags(QueryIntent(tagged.intent), tuple(tagged.tags))


class StudentQueryTagger:
    """The distilled query student (``hybridrec distill``) of ``distill.student_run`` or the newest run."""

    def __init__(self, settings: Settings):
        from hybridrec.batch.distill import load_student

        self._student = load_student(settings)
        log.info("query tagging by the student of %s", self._student.header.get("run_id"))

    def tag(self, text: str) -> QueryTags:
        found = self._student.predict(text)
        return QueryTags(found.intent, found.tags)


TAGGERS = {"student": StudentQueryTagger, "rules": lambda _: RuleQueryTagger(), "extraction": ExtractionQueryTagger}


class CachedQueryTagger:
    """Remembers the tags of recent query texts: popular queries repeat a lot."""

    def __init__(self, inner: QueryTagger, size: int = 100_000):
        self.tag = lru_cache(maxsize=size)(inner.tag)


def make_query_tagger(settings: Settings) -> QueryTagger:
    """``streaming.query_tagger``. The student needs a distill run: without one this fails and says so,
    rather than quietly tagging with something else."""
    return CachedQueryTagger(TAGGERS[settings.streaming.query_tagger](settings))
