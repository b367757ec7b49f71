"""The generative teacher of ``hybridrec distill``: a local LLM labels queries within a nightly budget.

A 1.5B model on two CPU cores reads a query in seconds, so it cannot label the whole search log and
pool every night. Instead each night it labels only texts it has never labelled (most searched
first), until ``distill.llm_budget_texts`` texts or ``distill.llm_budget_seconds`` are spent, and
keeps every label in the ``ops.teacher_labels`` ledger keyed by the normalised text and the
teacher's identity (model, prompt, schema). Labels accumulate night after night; a new model or
prompt starts a new ledger of its own. A crash loses at most one chunk of answers.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from pyiceberg.expressions import EqualTo
from tqdm import tqdm

from hybridrec.config import Settings
from hybridrec.contract import TEACHER_LABELS, QueryIntent
from hybridrec.evalsets import normalise
from hybridrec.lake import Lake
from hybridrec.models.extraction import QueryTagger, make_query_tagger
from hybridrec.models.extraction.schema import Outcome, QueryTags
from hybridrec.runinfo import RunContext

log = logging.getLogger(__name__)

LEDGER_CHUNK = 8  # answers per ledger commit: what a crash can lose


def text_key(text: str) -> str:
    return hashlib.sha1(normalise(text).encode()).hexdigest()


@dataclass(frozen=True)
class LlmLabels:
    """The ledger's labels of this run's texts (by text key) and what this run spent."""

    outcomes: dict[str, Outcome[QueryTags]]
    teacher: str
    labelled_now: int
    seconds_now: float
    budget_exhausted: bool

    @property
    def texts_per_s(self) -> float | None:
        return round(self.labelled_now / self.seconds_now, 4) if self.seconds_now > 0 else None


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
            if key not in known:
                first_spelling.setdefault(key, text)
        new = list(first_spelling.items())
        labelled, spent, started = 0, 0.0, time.perf_counter()
        exhausted = False
        with tqdm(total=min(len(new), cfg.llm_budget_texts), desc="llm teacher", unit="query", mininterval=5,
                  disable=None) as progress:
            while labelled < len(new):
                if labelled >= cfg.llm_budget_texts or time.perf_counter() - started >= cfg.llm_budget_seconds:
                    exhausted = True
                    break
                chunk = new[labelled: labelled + min(LEDGER_CHUNK, cfg.llm_budget_texts - labelled)]
                rows = []
                for key, text in chunk:  # one at a time: each text's own model time
                    began = time.perf_counter()
                    (outcome,) = self.tagger.tag_many([(text, ())])
                    seconds = time.perf_counter() - began
                    rows.append(_ledger_row(key, text, self.identity, outcome, seconds, run))
                    known[key] = outcome
                    spent += seconds
                lake.append(TEACHER_LABELS, [TEACHER_LABELS.to_arrow({c: [r[c] for r in rows] for c in rows[0]})], run)
                labelled += len(chunk)
                progress.update(len(chunk))
        log.info("llm teacher %s: %d texts labelled now in %.0f s (%s), %d in the ledger, %d new texts left",
                 self.identity, labelled, spent, "budget spent" if exhausted else "all new texts done",
                 len(known), len(new) - labelled)
        wanted = set(keys)
        return LlmLabels({k: o for k, o in known.items() if k in wanted}, self.identity, labelled, spent, exhausted)


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

