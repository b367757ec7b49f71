"""A tag stays only where the grounded text it sits on means it.

Validation already checks that every keyword occurs in the text; a generative model can still hang
any tag on any keyword ("토트넘" → ``gaming``, "carbonara" → ``food``) or spray a query with a whole
family of siblings. :class:`TagGrounder` reads the meaning of the keyword with the multilingual
sentence encoder and keeps a tag only when the keyword is close enough to one of the tag's surface
forms (or to its path's words, for tags with none), in either language, and that tag is among the
keyword's nearest of its aspect (so "cozy" keeps ``mood/cozy`` and not ``mood/quiet``, which is
also near). Generic parents are kept only when nothing more specific is: the most specific
supported tags win.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from hybridrec.models.extraction.schema import Keyword, KeywordSet, QueryTags
from hybridrec.models.text import Embedder, unit_rows
from hybridrec.taxonomy import Taxonomy, most_specific


def _describe(path: str) -> str:
    return " ".join(reversed(path.replace("-", " ").split("/")))


class TagGrounder:
    SIBLING_MARGIN = 0.05  # a tag this far below the nearest of its aspect is a neighbour's, not the keyword's

    def __init__(self, taxonomy: Taxonomy, embedder: Embedder, threshold: float):
        self.taxonomy = taxonomy
        self.embedder = embedder
        self.threshold = threshold
        phrases, owners = [], []
        for tag in taxonomy.tags:
            for phrase in (*tag.en, *tag.ko) or (_describe(tag.path),):
                phrases.append(phrase)
                owners.append(tag.path)
        self._owners = np.array(owners)
        self._vectors = unit_rows(embedder.encode(phrases))
        self._paths = [t.path for t in taxonomy.tags]
        self._rows = [np.flatnonzero(self._owners == path) for path in self._paths]
        self._aspect_of = {t.path: t.aspect for t in taxonomy.tags}
        self._scores = lru_cache(maxsize=50_000)(self._scores_of)

    def _scores_of(self, phrase: str) -> dict[str, float]:
        cosines = self._vectors @ unit_rows(self.embedder.encode([phrase]))[0]
        return {path: float(cosines[rows].max()) for path, rows in zip(self._paths, self._rows) if len(rows)}

    def support(self, phrase: str, tag: str) -> float:
        """The highest cosine between ``phrase`` and any surface form of ``tag``."""
        return self._scores(phrase).get(tag, 0.0)

    def _spells(self, phrase: str, tag: str) -> bool:
        """The phrase contains one of the tag's surface forms: support needs no embedding."""
        folded = phrase.casefold()
        return any(form.casefold() in folded for form in (*self.taxonomy.get(tag).en, *self.taxonomy.get(tag).ko))

    def _supported(self, phrase: str, tag: str) -> bool:
        if self._spells(phrase, tag):
            return True
        scores = self._scores(phrase)
        best_of_aspect = max(v for path, v in scores.items() if self._aspect_of[path] == self._aspect_of[tag])
        return scores.get(tag, 0.0) >= max(self.threshold, best_of_aspect - self.SIBLING_MARGIN)

    def keywords(self, found: KeywordSet) -> KeywordSet:
        """Each keyword keeps its tag only when the keyword means it."""
        kept = [kw if kw.tag is None or self._supported(kw.text, kw.tag)
                else Keyword(text=kw.text, weight=kw.weight, tag=None, aspect=kw.aspect) for kw in found.keywords]
        return KeywordSet(keywords=tuple(kept))

    def _query_support(self, phrases: list[str], tag: str) -> float:
        if any(self._spells(phrase, tag) for phrase in phrases):
            return 1.0
        return max(self.support(p, tag) for p in phrases)

    def query(self, query: str, tags: QueryTags) -> QueryTags:
        """Per aspect, the one tag some keyword (or the whole query) means best, if it means it at all: a
        query names one topic, or one dish with one mood and one purpose, not a family of siblings."""
        phrases = [*tags.keywords, query]
        best: dict[str, tuple[float, str]] = {}
        for tag in most_specific(tags.tags):
            score = self._query_support(phrases, tag)
            aspect = "topic" if self._aspect_of[tag] == "menu" else self._aspect_of[tag]
            if score >= self.threshold and score > best.get(aspect, (0.0, ""))[0]:
                best[aspect] = (score, tag)
        return tags.model_copy(update={"tags": tuple(tag for _, tag in best.values())})
