"""The review student: keywords and tags of every review at bulk speed, learned from the teacher's readings.

The teacher (the offline reader, or the LLM combined with it) embeds each candidate phrase of a
review with the sentence encoder and picks keywords by MMR: tens of milliseconds a review, and
seconds for the LLM. The student reads the same candidates (:func:`models.extraction.candidates.candidates`:
taxonomy forms, aspect opinions, noun phrases) and scores each with two sparse linear heads over
the phrase's words, its character n-grams and where it stands in the review, learned from which
candidates the teacher kept (``keep``) and which tag it gave the ones no form names (``tag``: a
dish or topic the teacher's embeddings recognised). Tags that a taxonomy form or an aspect opinion
spells stay exactly as the shared candidate code reads them, so the student cannot invent an
aspect that the text does not state. Its output passes the same validation as every backend's.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hybridrec.models.extraction.candidates import CJK, HANGUL, Candidate, Gazetteer, candidates
from hybridrec.models.extraction.schema import (
    InvalidOutput, Keyword, KeywordSet, Limits, Outcome, validate_keywords,
)
from hybridrec.models.extraction.untrusted import prepare
from hybridrec.models.student import (
    FEATURE_VERSION, LinearHead, Vocabulary, _load, _save, fit_head, text_features, unit_matrix,
)
from hybridrec.taxonomy import Taxonomy

KIND = "review-student"
PHRASE_CACHE_SIZE = 100_000
NO_TAG = ""


def _bucket(value: int, top: int) -> int:
    return min(value, top)


def context_features(cand: Candidate, folded_text: str) -> list[str]:
    """Where and how often the phrase stands, and what the shared candidate code knew of it."""
    first = folded_text.find(cand.text)
    script = "ko" if HANGUL.search(cand.text) else "cjk" if CJK.search(cand.text) else "latin"
    return [f"pos:{_bucket(int(4 * max(first, 0) / max(len(folded_text), 1)), 3)}",
            f"count:{_bucket(folded_text.count(cand.text), 3)}", f"words:{_bucket(len(cand.text.split()), 3)}",
            f"script:{script}", f"aspect:{cand.tag.aspect if cand.tag else '-'}", f"denied:{cand.negated}"]


def phrase_features(cand: Candidate, folded_text: str) -> list[str]:
    """The phrase's words, bigrams and character n-grams (as the query student reads a query) and its context."""
    return [*text_features(cand.text), *context_features(cand, folded_text)]


@dataclass
class ReviewStudent:
    backend: ClassVar[str] = "student"  # the extraction backend it is (``extraction.backend: student``)
    gazetteer: Gazetteer
    vocabulary: Vocabulary
    keep: LinearHead  # one sigmoid: the teacher would keep this candidate as a keyword
    tag: LinearHead  # softmax over NO_TAG and the tags the teacher gave candidates no form names
    tag_names: tuple[str, ...]
    limits: Limits
    max_input_chars: int
    tag_threshold: float = 0.5
    header: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, taxonomy: Taxonomy, texts: Sequence[str], taught: Sequence[KeywordSet | None], *, limits: Limits,
            max_input_chars: int, min_count: int, l2: float, tag_threshold: float = 0.5,
            min_tag_examples: int = 5, gazetteer: Gazetteer | None = None) -> "ReviewStudent":
        """Learn from the teacher's keyword sets of ``texts`` (``None``: the teacher rejected the text; skipped)."""
        gazetteer = gazetteer or Gazetteer(taxonomy)
        rows: list[list[str]] = []
        kept: list[int] = []
        tagged: list[tuple[int, str]] = []  # (row, teacher's tag) of kept candidates no form names
        for text, answer in zip(texts, taught):
            if answer is None:
                continue
            folded, cands = _candidates(prepare(text, max_input_chars).text, gazetteer, limits)
            chosen = {kw.text.casefold(): kw.tag for kw in answer.keywords}
            for cand in cands:
                rows.append(phrase_features(cand, folded))
                kept.append(int(cand.text in chosen))
                if cand.text in chosen and cand.tag is None:
                    tagged.append((len(rows) - 1, chosen[cand.text] or NO_TAG))
        if not rows:
            raise ValueError("no teacher labels to learn from")
        counts = Counter(f for row in rows for f in set(row))
        vocabulary = Vocabulary({f: i for i, f in enumerate(sorted(f for f, n in counts.items() if n >= min_count))})
        x = unit_matrix([vocabulary.rows_of(r) for r in rows], len(vocabulary))
        keep = fit_head(x, np.array(kept, dtype=np.float64)[:, None], "sigmoid", l2)
        tag_counts = Counter(tag for _, tag in tagged if tag != NO_TAG)
        names = (NO_TAG, *sorted(t for t, n in tag_counts.items() if n >= min_tag_examples))
        labelled = [(r, names.index(t)) for r, t in tagged if t in names]
        if len(names) > 1 and labelled:
            tag = fit_head(x[[r for r, _ in labelled]], np.array([c for _, c in labelled]), "softmax", l2)
        else:  # the teacher tagged nothing beyond the forms: a head that always says "no tag"
            tag = LinearHead(np.zeros((len(vocabulary), 1), np.float32), np.zeros(1, np.float32), "softmax")
            names = (NO_TAG,)
        header = {"train_texts": sum(a is not None for a in taught), "candidates": len(rows),
                  "kept_share": round(float(np.mean(kept)), 4), "tag_examples": len(labelled)}
        return cls(gazetteer, vocabulary, keep, tag, names, limits, max_input_chars, tag_threshold, header)

    def __post_init__(self) -> None:
        # a phrase's own features, once per distinct phrase: "staff", "parking" recur in review after review
        self._phrase_row = functools.lru_cache(maxsize=PHRASE_CACHE_SIZE)(lambda phrase: self.vocabulary.row(phrase))

    def _row(self, cand: Candidate, folded_text: str) -> list[int]:
        """The indices of :func:`phrase_features`."""
        return list({*self._phrase_row(cand.text), *self.vocabulary.rows_of(context_features(cand, folded_text))})

    def _read_prepared(self, texts: Sequence[str]) -> list[tuple[str, KeywordSet]]:
        """(the cleaned text every backend reads, its unvalidated keywords: tagged forms and opinions first,
        then by the keep score) per text; every candidate of every text is scored in one sparse product
        per head."""
        prepared = [prepare(t, self.max_input_chars).text for t in texts]
        read = [_candidates(p, self.gazetteer, self.limits) for p in prepared]
        rows = [self._row(c, folded) for folded, cands in read for c in cands]
        if not rows:
            return [(p, KeywordSet()) for p in prepared]
        x = unit_matrix(rows, len(self.vocabulary))
        keep = self.keep.probabilities(x)[:, 0]
        tag_p = self.tag.probabilities(x) if len(self.tag_names) > 1 else None
        out, offset = [], 0
        for _, cands in read:
            scored = []
            for i, cand in enumerate(cands, start=offset):
                tag = cand.tag.path if cand.tag is not None and not cand.negated else None
                if cand.tag is None and tag_p is not None:
                    best = int(np.argmax(tag_p[i]))
                    if best and tag_p[i, best] >= self.tag_threshold:
                        tag = self.tag_names[best]
                scored.append((cand.tag is not None and tag is not None, float(keep[i]), cand.text, tag))
            offset += len(cands)
            out.append(self._pick(scored))
        return list(zip(prepared, out))

    def _pick(self, scored: list[tuple[bool, float, str, str | None]]) -> KeywordSet:
        picked: list[tuple[float, str, str | None]] = []
        for _, weight, phrase, tag in sorted(scored, key=lambda s: (not s[0], -s[1])):
            if len(picked) == self.limits.max_keywords:
                break
            if not any(phrase in other or other in phrase for _, other, _ in picked):
                picked.append((weight, phrase, tag))
        return KeywordSet(keywords=tuple(Keyword(text=p, weight=round(w, 4), tag=t) for w, p, t in picked))

    def extract(self, texts: Sequence[str]) -> list[Outcome[KeywordSet]]:
        """The extraction backend's interface: one validated outcome per text."""
        outcomes = []
        for source, proposal in self._read_prepared(texts):
            try:
                outcomes.append(Outcome(validate_keywords(proposal.model_dump(), source, self.gazetteer.taxonomy,
                                                          self.limits)))
            except InvalidOutput as err:
                outcomes.append(Outcome(None, err.reason))
        return outcomes

    def reviews_per_s(self, texts: Sequence[str]) -> float:
        started = time.perf_counter()
        self.extract(texts)
        return len(texts) / max(time.perf_counter() - started, 1e-9)

    def save(self, path: Path) -> Path:
        header = {**self.header, "kind": KIND, "feature_version": FEATURE_VERSION, "tag_names": list(self.tag_names),
                  "limits": [self.limits.max_keywords, self.limits.max_keyword_chars],
                  "max_input_chars": self.max_input_chars, "tag_threshold": self.tag_threshold}
        return _save(path, self.vocabulary, header, {"keep": self.keep, "tag": self.tag})

    @classmethod
    def load(cls, path: Path, taxonomy: Taxonomy, gazetteer: Gazetteer | None = None) -> "ReviewStudent":
        vocabulary, header, heads = _load(path, KIND)
        limits = Limits(*header.pop("limits"))
        return cls(gazetteer or Gazetteer(taxonomy), vocabulary, heads["keep"], heads["tag"],
                   tuple(header.pop("tag_names")), limits, header.pop("max_input_chars"), header.pop("tag_threshold"),
                   header)


def _candidates(prepared: str, gazetteer: Gazetteer, limits: Limits) -> tuple[str, list[Candidate]]:
    folded = prepared.casefold()
    return folded, candidates(folded, gazetteer, limits.max_keyword_chars)

