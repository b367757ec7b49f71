"""The generative teacher of ``hybridrec distill``: a local LLM labels queries within a nightly budget.

A 1.5B model on two CPU cores reads a query in seconds, so it cannot label the whole search log and
pool every night. Instead each night it labels only texts it has never labelled (most searched
first), until ``distill.llm_budget_texts`` texts or ``distill.llm_budget_seconds`` are spent, and
keeps every label in the ``ops.teacher_labels`` ledger keyed by the normalised text and the
teacher's identity (model, prompt, schema). Labels accumulate night after night; a new model or
prompt starts a new ledger of its own. A crash loses at most one chunk of answers. A call that got no answer at all (a server
down) is not recorded, so the text is asked again next run; an answer the validation rejected is.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from pyiceberg.expressions import EqualTo
from tqdm import tqdm

from hybridrec.config import Settings
from hybridrec.contract import TEACHER_LABELS, QueryIntent
from hybridrec.lake import Lake
from hybridrec.models.extraction import QueryTagger, make_query_tagger
from hybridrec.models.extraction.schema import Outcome, QueryTags
from hybridrec.runinfo import RunContext

log = logging.getLogger(__name__)

LEDGER_CHUNK = 8  # answers per ledger commit: what a crash can lose


TRANSIENT = frozenset({"not_json", "not_object"})  # no answer (a failed call): not kept, asked again next run


def text_key(text: str) -> str | None:
    """One key per spelling family: Unicode width, case and spacing do not matter, punctuation does ("c#"
    is not "c"); None for a text with nothing to read."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return hashlib.sha1(folded.encode()).hexdigest() if folded else None


@dataclass(frozen=True)
class LlmLabels:
    """The ledger's labels of this run's texts (by text key) and what this run spent."""

    outcomes: dict[str, Outcome[QueryTags]]
    teacher: str
    labelled_now: int
    seconds_now: float  # model time of every text asked this run, answered or not
    budget_exhausted: bool
    unanswered_now: int = 0

    @property
    def texts_per_s(self) -> float | None:
        asked = self.labelled_now + self.unanswered_now
        return round(asked / self.seconds_now, 4) if self.seconds_now > 0 else None


class LlmTeacher:
    """The configured generative backend (``distill.llm_teacher``) as a query labeller with a ledger."""

    def __init__(self, settings: Settings, threads: int | None = None, tagger: QueryTagger | None = None):
        """``tagger``: the configured backend's model alone (no offline vote: that is taken per run)."""
        if tagger is None:
            cfg = settings.extraction.model_copy(update={"backend": settings.distill.llm_teacher,
                                                         "combine_offline": False})
            tagger = make_query_tagger(settings.model_copy(update={"extraction": cfg}), threads)
        self.settings = settings
        self.tagger = tagger
        self.identity = tagger.identity

    def label(self, texts: Sequence[str], lake: Lake, run: RunContext) -> LlmLabels:
        """Labels for ``texts`` (in priority order): the ledger's, plus new ones within the budget."""
        cfg = self.settings.distill
        keys = [text_key(t) for t in texts]
        known = read_ledger(lake, self.identity)
        first_spelling: dict[str, str] = {}
        for key, text in zip(keys, texts):
            if key is not None and key not in known:
                first_spelling.setdefault(key, text)
        new = list(first_spelling.items())
        asked = labelled = failed = 0
        spent, exhausted = 0.0, False
        with tqdm(total=min(len(new), cfg.llm_budget_texts), desc="llm teacher", unit="query", mininterval=5,
                  disable=None) as progress:
            while asked < len(new) and not exhausted:
                rows = []
                for key, text in new[asked: asked + LEDGER_CHUNK]:  # one at a time: each text's own model time
                    if asked >= cfg.llm_budget_texts or spent >= cfg.llm_budget_seconds:
                        exhausted = True
                        break
                    began = time.perf_counter()
                    (outcome,) = self.tagger.tag_many([(text, ())])
                    seconds = time.perf_counter() - began
                    asked, spent = asked + 1, spent + seconds
                    progress.update(1)
                    if outcome.reason in TRANSIENT:
                        failed += 1
                        continue
                    rows.append(_ledger_row(key, text, self.identity, outcome, seconds, run))
                    known[key] = outcome
                if rows:
                    lake.append(TEACHER_LABELS, [TEACHER_LABELS.to_arrow({c: [r[c] for r in rows] for c in rows[0]})],
                                run)
                    labelled += len(rows)
        log.info("llm teacher %s: %d texts labelled now in %.0f s of model time (%s), %d unanswered (asked again "
                 "next run), %d in the ledger, %d new texts left", self.identity, labelled, spent,
                 "budget spent" if exhausted else "all new texts done", failed, len(known), len(new) - asked)
        wanted = set(keys)
        return LlmLabels({k: o for k, o in known.items() if k in wanted}, self.identity, labelled, spent, exhausted,
                         failed)


def _ledger_row(key: str, text: str, teacher: str, outcome: Outcome[QueryTags], seconds: float,
                run: RunContext) -> dict:
    value = outcome.value
    return {"text_key": key, "text": text, "teacher": teacher,
            "intent": None if value is None else QueryIntent(value.intent).value,
            "tags": [] if value is None else list(value.tags), "keywords": [] if value is None else list(value.keywords),
            "confidence": None if value is None else float(value.confidence), "reason": outcome.reason,
            "seconds": round(seconds, 4), "run_id": run.run_id, "labelled_at": datetime.now(timezone.utc)}


def read_ledger(lake: Lake, teacher: str) -> dict[str, Outcome[QueryTags]]:
    """text key → the teacher's outcome, for one teacher identity (the first label of a key wins)."""
    if not lake.exists(TEACHER_LABELS):
        return {}
    rows = lake.scan(TEACHER_LABELS, EqualTo("teacher", teacher),
                     ("text_key", "intent", "tags", "keywords", "confidence", "reason", "labelled_at"))
    out: dict[str, Outcome[QueryTags]] = {}
    for row in sorted(rows.to_pylist(), key=lambda r: r["labelled_at"]):
        if row["text_key"] in out:
            continue
        out[row["text_key"]] = Outcome(None, row["reason"] or "rejected") if row["intent"] is None else Outcome(
            QueryTags(intent=row["intent"], tags=tuple(row["tags"] or ()), keywords=tuple(row["keywords"] or ()),
                      confidence=row["confidence"] if row["confidence"] is not None else 0.0), row["reason"])
    return out

