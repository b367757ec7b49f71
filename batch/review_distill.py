"""The review student's night in ``hybridrec distill``: teacher labels of real reviews, a fit, a held-out check.

The teacher is the extraction reader of every review the bulk path would otherwise have to run: the
offline reader on the whole pool and, when ``distill.llm_teacher`` is set, the LLM on every pool review
its ledger holds (``ops.review_teacher_labels``: each night it reads up to
``distill.llm_review_budget_texts`` reviews it has not read before), combined with the offline reading
by ``extraction.combine_rule``. A share of the pool (by normalised text, as for queries) is held out to
measure how closely the student follows its teacher, and the LLM where it read a held-out review, and
how fast it reads reviews it never saw.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hybridrec.batch.llm_teacher import LlmReviewTeacher, text_key
from hybridrec.batch.review_pool import review_pool
from hybridrec.config import Settings
from hybridrec.lake import Lake
from hybridrec.models.extraction import KeywordExtractor, make_backends
from hybridrec.models.extraction.combined import merge_review
from hybridrec.models.extraction.schema import KeywordSet, Limits, Outcome
from hybridrec.models.review_student import ReviewStudent
from hybridrec.runinfo import RunContext
from hybridrec.taxonomy import Taxonomy

log = logging.getLogger(__name__)

REVIEW_STUDENT_FILE = "review-student.npz"


def offline_reader(settings: Settings) -> KeywordExtractor:
    offline_settings = settings.model_copy(
        update={"extraction": settings.extraction.model_copy(update={"backend": "offline"})})
    return make_backends(offline_settings)[0]


def teacher_readings(settings: Settings, texts: Sequence[str], offline: KeywordExtractor, lake: Lake, run: RunContext,
                     llm: LlmReviewTeacher | None) -> tuple[list[Outcome[KeywordSet]], dict[str, Outcome[KeywordSet]],
                                                            dict[str, Any]]:
    """The teacher's outcome per text, the LLM's own answers by text key, and what it cost: ``offline`` on all,
    combined with the LLM's reading wherever its ledger has one."""
    read = offline.extract(texts)
    if llm is None:
        return read, {}, {}
    labels = llm.label(texts, lake, run)
    answers = {k: o for k, o in labels.outcomes.items() if o.value is not None}
    used = 0
    for i, text in enumerate(texts):
        answer = answers.get(text_key(text))
        if answer is not None:
            combined = merge_review(answer, read[i], settings.extraction.max_keywords,
                                    settings.extraction.combine_rule)
            used += int(combined.value != read[i].value)
            read[i] = combined
    stats = {"llm_teacher": labels.teacher, "llm_reviews_labelled_now": labels.labelled_now,
             "llm_reviews_unanswered_now": labels.unanswered_now, "llm_reviews_in_ledger": labels.in_ledger,
             "llm_reviews_of_pool": len(answers), "llm_labels_used": used,
             "llm_rejected_of_pool": len(labels.outcomes) - len(answers),
             "llm_reviews_per_s": labels.texts_per_s, "llm_seconds_now": round(labels.seconds_now, 1)}
    return read, answers, stats


def _timed(read, texts: Sequence[str]) -> tuple[list[KeywordSet | None], float]:
    started = time.perf_counter()
    values = [o.value for o in read(texts)]
    return values, len(texts) / max(time.perf_counter() - started, 1e-9)


def _keyword_f1(predicted: Sequence[KeywordSet | None], taught: Sequence[KeywordSet | None]) -> float:
    hits = shown = wanted = 0
    for p, t in zip(predicted, taught):
        mine = {k.text for k in p.keywords} if p else set()
        theirs = {k.text for k in t.keywords} if t else set()
        hits, shown, wanted = hits + len(mine & theirs), shown + len(mine), wanted + len(theirs)
    return round(2 * hits / (shown + wanted), 4) if shown + wanted else 0.0


def _same_tags(predicted: Sequence[KeywordSet | None], taught: Sequence[KeywordSet | None]) -> float | None:
    same = [set(p.tags if p else ()) == set(t.tags if t else ()) for p, t in zip(predicted, taught)]
    return round(sum(same) / len(same), 4) if same else None


def distill_reviews(settings: Settings, taxonomy: Taxonomy, lake: Lake, run: RunContext, run_dir: Path, held_out,
                    llm: LlmReviewTeacher | None = None) -> dict[str, Any]:
    """Fit, check and save the review student; ``held_out(text)`` says which texts it must not learn from."""
    cfg, extraction = settings.distill, settings.extraction
    texts = review_pool(cfg.review_pool_per_source)
    offline = offline_reader(settings)
    read, llm_answers, teacher_stats = teacher_readings(settings, texts, offline, lake, run, llm)
    held = [held_out(t) for t in texts]
    train = [(t, o.value) for t, o, h in zip(texts, read, held) if not h]
    limits = Limits(extraction.max_keywords, extraction.max_keyword_chars)
    model = ReviewStudent.fit(taxonomy, [t for t, _ in train], [v for _, v in train], limits=limits,
                              max_input_chars=extraction.max_input_chars, min_count=cfg.min_feature_count,
                              l2=cfg.review_l2)
    holdout = [(t, o.value) for t, o, h in zip(texts, read, held) if h]
    holdout_texts = [t for t, _ in holdout]
    predicted, per_s = _timed(model.extract, holdout_texts)  # texts it never saw, first pass
    _, offline_per_s = _timed(offline.extract, holdout_texts)  # the same texts under the same load
    taught = [v for _, v in holdout]
    metrics = {
        "pool_texts": len(texts), "train_texts": len(train), "holdout_texts": len(holdout),
        "agreement_holdout_tags": _same_tags(predicted, taught),
        "keyword_f1_vs_teacher": _keyword_f1(predicted, taught),
        "review_student_reviews_per_s": round(per_s, 1), "offline_reviews_per_s": round(offline_per_s, 1),
        "speedup_over_offline": round(per_s / offline_per_s, 1), **teacher_stats,
    }
    if llm is not None:  # where the LLM read a held-out review: the student against the teacher there, and the LLM alone
        where = [i for i, t in enumerate(holdout_texts) if text_key(t) in llm_answers]
        raw = [llm_answers[text_key(holdout_texts[i])].value for i in where]
        mine = [predicted[i] for i in where]
        metrics.update({
            "llm_holdout_texts": len(where),
            "agreement_holdout_llm": _same_tags(mine, [taught[i] for i in where]),
            "agreement_holdout_llm_alone": _same_tags(mine, raw),
            "keyword_f1_vs_llm_alone": _keyword_f1(mine, raw) if where else None,
            "speedup_over_llm": round(per_s / teacher_stats["llm_reviews_per_s"], 1)
            if teacher_stats.get("llm_reviews_per_s") else None,
        })
    model.header.update({"run_id": run.run_id, "teacher": "offline" + (f"+{llm.identity}" if llm else ""),
                         **metrics})
    path = model.save(run_dir / REVIEW_STUDENT_FILE)
    log.info("review student: %d reviews (%d held out), tag-set agreement %.3f, keyword F1 vs teacher %.3f, "
             "%.0f reviews/s (offline teacher %.0f/s)%s", len(texts), len(holdout), metrics["agreement_holdout_tags"] or 0,
             metrics["keyword_f1_vs_teacher"], per_s, offline_per_s,
             f"; on {metrics['llm_holdout_texts']} held-out reviews the LLM read: agreement "
             f"{metrics['agreement_holdout_llm']}" if llm is not None else "")
    return {"review_student_file": str(path), "review_student": metrics}
