"""The generative teacher of ``hybridrec distill``: a local LLM labels queries and reviews within a nightly budget.

A 1.5B model on two CPU cores reads a query in seconds, so it cannot label the whole search log and
pool every night. Instead each night it labels only texts it has never labelled (most searched
first), until ``distill.llm_budget_texts`` texts or ``distill.llm_budget_seconds`` are spent, and
keeps every label in a ledger keyed by the normalised text and the teacher's identity (model, prompt,
schema): ``ops.teacher_labels`` for queries, ``ops.review_teacher_labels`` for reviews (their own budget,
``distill.llm_review_budget_texts`` and ``..._seconds``). Labels accumulate night after night; a new
model or prompt starts a new ledger of its own. A crash loses at most one chunk of answers. A call that
got no answer at all (a server down) is not recorded, so the text is asked again next run; an answer
the validation rejected is.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from pyiceberg.expressions import EqualTo
from tqdm import tqdm

from hybridrec.config import Settings
from hybridrec.contract import REVIEW_TEACHER_LABELS, TEACHER_LABELS, QueryIntent, TableSpec
from hybridrec.lake import Lake
from hybridrec.models.extraction import KeywordExtractor, QueryTagger, make_backends
from hybridrec.models.extraction.schema import KeywordSet, Outcome, QueryTags
from hybridrec.runinfo import RunContext

log = logging.getLogger(__name__)

LEDGER_CHUNK = 8  # answers per ledger commit: what a crash can lose
T = TypeVar("T", QueryTags, KeywordSet)


TRANSIENT = frozenset({"not_json", "not_object"})  # no answer (a failed call): not kept, asked again next run


def text_key(text: str) -> str | None:
    """One key per spelling family: Unicode width, case and spacing do not matter, punctuation does ("c#"
    is not "c"); None for a text with nothing to read."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return hashlib.sha1(folded.encode()).hexdigest() if folded else None


@dataclass(frozen=True)
class LlmLabels(Generic[T]):
    """The ledger's labels of this run's texts (by text key) and what this run spent."""

    outcomes: dict[str, Outcome[T]]
    teacher: str
    labelled_now: int
    seconds_now: float  # model time of every text asked this run, answered or not
    budget_exhausted: bool
    unanswered_now: int = 0
    in_ledger: int = 0

    @property
    def texts_per_s(self) -> float | None:
        asked = self.labelled_now + self.unanswered_now
        return round(asked / self.seconds_now, 4) if self.seconds_now > 0 else None


@dataclass(frozen=True)
class Ledger(Generic[T]):
    """One kind of label (query tags, review keywords) in its lake table, per teacher identity."""

    spec: TableSpec
    answer_columns: Callable[[T | None], dict[str, Any]]  # the columns that hold an answer
    from_row: Callable[[dict], T | None]  # and back; None for a rejected answer

    def read(self, lake: Lake, teacher: str) -> dict[str, Outcome[T]]:
        """text key → the teacher's outcome (the first label of a key wins)."""
        if not lake.exists(self.spec):
            return {}
        out: dict[str, Outcome[T]] = {}
        for row in sorted(lake.scan(self.spec, EqualTo("teacher", teacher)).to_pylist(), key=lambda r: r["labelled_at"]):
            if row["text_key"] not in out:
                value = self.from_row(row)
                out[row["text_key"]] = Outcome(value, row["reason"] or (None if value is not None else "rejected"))
        return out

    def row(self, key: str, text: str, teacher: str, outcome: Outcome[T], seconds: float, run: RunContext) -> dict:
        return {"text_key": key, "text": text, "teacher": teacher, **self.answer_columns(outcome.value),
                "reason": outcome.reason, "seconds": round(seconds, 4), "run_id": run.run_id,
                "labelled_at": datetime.now(timezone.utc)}


QUERY_LEDGER: Ledger[QueryTags] = Ledger(
    TEACHER_LABELS,
    lambda v: {"intent": None if v is None else QueryIntent(v.intent).value, "tags": [] if v is None else list(v.tags),
               "keywords": [] if v is None else list(v.keywords),
               "confidence": None if v is None else float(v.confidence)},
    lambda r: None if r["intent"] is None else QueryTags(
        intent=r["intent"], tags=tuple(r["tags"] or ()), keywords=tuple(r["keywords"] or ()),
        confidence=r["confidence"] if r["confidence"] is not None else 0.0))

REVIEW_LEDGER: Ledger[KeywordSet] = Ledger(
    REVIEW_TEACHER_LABELS,
    lambda v: {"answer": None if v is None else v.model_dump_json()},
    lambda r: None if r["answer"] is None else KeywordSet.model_validate_json(r["answer"]))


def label_within_budget(texts: Sequence[str], ask: Callable[[str], Outcome[T]], ledger: Ledger[T], teacher: str,
                        lake: Lake, run: RunContext, budget_texts: int, budget_seconds: float,
                        unit: str) -> LlmLabels[T]:
    """Labels for ``texts`` (in priority order): the ledger's, plus new ones asked one at a time (each text's own
    model time) until ``budget_texts`` or ``budget_seconds`` are spent, committed every :data:`LEDGER_CHUNK`."""
    keys = [text_key(t) for t in texts]
    known = ledger.read(lake, teacher)
    first_spelling: dict[str, str] = {}
    for key, text in zip(keys, texts):
        if key is not None and key not in known:
            first_spelling.setdefault(key, text)
    new = list(first_spelling.items())
    asked = labelled = failed = 0
    spent, exhausted = 0.0, False
    with tqdm(total=min(len(new), budget_texts), desc=f"llm teacher ({unit}s)", unit=unit, mininterval=5,
              disable=None) as progress:
        while asked < len(new) and not exhausted:
            rows = []
            for key, text in new[asked: asked + LEDGER_CHUNK]:
                if asked >= budget_texts or spent >= budget_seconds:
                    exhausted = True
                    break
                began = time.perf_counter()
                outcome = ask(text)
                seconds = time.perf_counter() - began
                asked, spent = asked + 1, spent + seconds
                progress.update(1)
                if outcome.reason in TRANSIENT:
                    failed += 1
                    continue
                rows.append(ledger.row(key, text, teacher, outcome, seconds, run))
                known[key] = outcome
            if rows:
                lake.append(ledger.spec, [ledger.spec.to_arrow({c: [r[c] for r in rows] for c in rows[0]})], run)
                labelled += len(rows)
    log.info("llm teacher %s (%s texts): %d labelled now in %.0f s of model time (%s), %d unanswered (asked "
             "again next run), %d in the ledger, %d new texts left", teacher, unit, labelled, spent,
             "budget spent" if exhausted else "all new texts done", failed, len(known), len(new) - asked)
    wanted = set(keys)
    return LlmLabels({k: o for k, o in known.items() if k in wanted}, teacher, labelled, spent, exhausted, failed,
                     len(known))


class LlmTeacher:
    """The configured generative backend (``distill.llm_teacher``) as a query labeller with a ledger."""

    def __init__(self, settings: Settings, threads: int | None = None, tagger: QueryTagger | None = None):
        """``tagger``: the configured backend's model alone (no offline vote: that is taken per run)."""
        self.settings = settings
        self.tagger = tagger or make_backends(teacher_settings(settings), threads)[1]
        self.identity = self.tagger.identity

    def label(self, texts: Sequence[str], lake: Lake, run: RunContext) -> LlmLabels[QueryTags]:
        cfg = self.settings.distill
        return label_within_budget(texts, lambda text: self.tagger.tag_many([(text, ())])[0], QUERY_LEDGER,
                                   self.identity, lake, run, cfg.llm_budget_texts, cfg.llm_budget_seconds, "query")


class LlmReviewTeacher:
    """The same backend as a reader of reviews (keywords and aspect tags), with a ledger of its own."""

    def __init__(self, settings: Settings, threads: int | None = None, extractor: KeywordExtractor | None = None):
        self.settings = settings
        self.extractor = extractor or make_backends(teacher_settings(settings), threads)[0]
        self.identity: str = getattr(self.extractor, "identity", self.extractor.backend)

    def label(self, texts: Sequence[str], lake: Lake, run: RunContext) -> LlmLabels[KeywordSet]:
        cfg = self.settings.distill
        return label_within_budget(texts, lambda text: self.extractor.extract([text])[0], REVIEW_LEDGER, self.identity,
                                   lake, run, cfg.llm_review_budget_texts, cfg.llm_review_budget_seconds, "review")


def teacher_settings(settings: Settings) -> Settings:
    """The generative teacher's model alone: the offline vote is taken per run, by the caller."""
    cfg = settings.extraction.model_copy(update={"backend": settings.distill.llm_teacher, "combine_offline": False})
    return settings.model_copy(update={"extraction": cfg})


def read_ledger(lake: Lake, teacher: str) -> dict[str, Outcome[QueryTags]]:
    """text key → the teacher's query outcome, for one teacher identity."""
    return QUERY_LEDGER.read(lake, teacher)
