"""The review student's night in ``hybridrec distill``: teacher labels of real reviews, a fit, a held-out check.

The teacher is the extraction reader of every review the bulk path would otherwise have to run: the
offline reader on the whole pool and, when ``distill.llm_teacher`` is set, the LLM on the first
``distill.llm_review_budget_texts`` reviews, combined with the offline reading by
``extraction.combine_rule`` (the LLM's answers are kept in the extraction answer cache, so a text
costs model time once). A share of the pool (by normalised text, as for queries) is held out to
measure how closely the student follows its teacher and how fast it reads reviews it never saw.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hybridrec.batch.review_pool import review_pool
from hybridrec.config import Settings
from hybridrec.models.extraction import KeywordExtractor, make_backends
from hybridrec.models.extraction.combined import merge_review
from hybridrec.models.extraction.schema import KeywordSet, Limits, Outcome
from hybridrec.models.review_student import ReviewStudent
from hybridrec.taxonomy import Taxonomy

log = logging.getLogger(__name__)

REVIEW_STUDENT_FILE = "review-student.npz"
ANSWER_CACHE = "cache/llm-answers.sqlite"  # under home, when extraction.answer_cache is not set


def offline_reader(settings: Settings) -> KeywordExtractor:
    offline_settings = settings.model_copy(
        update={"extraction": settings.extraction.model_copy(update={"backend": "offline"})})
    return make_backends(offline_settings)[0]


def teacher_readings(settings: Settings, texts: Sequence[str],
                     offline: KeywordExtractor) -> tuple[list[Outcome[KeywordSet]], dict[str, Any]]:
    """The teacher's outcome per text and what it cost: ``offline`` (the offline reader) on all, the LLM
    on a budget."""
    read = offline.extract(texts)
    stats: dict[str, Any] = {"llm_labels_used": 0}
    budget = min(settings.distill.llm_review_budget_texts, len(texts))
    if settings.distill.llm_teacher and budget:
        cfg = settings.extraction.model_copy(update={
            "backend": settings.distill.llm_teacher, "combine_offline": False,
            "answer_cache": settings.extraction.answer_cache or ANSWER_CACHE})
        model, _ = make_backends(settings.model_copy(update={"extraction": cfg}))
        started = time.perf_counter()
        answers = model.extract(texts[:budget])
        stats["llm_seconds"] = round(time.perf_counter() - started, 1)
        stats["llm_reviews_asked"] = budget
        for i, answer in enumerate(answers):
            combined = merge_review(answer, read[i], settings.extraction.max_keywords, settings.extraction.combine_rule)
            stats["llm_labels_used"] += int(combined.value != read[i].value)
            read[i] = combined
    return read, stats


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


def distill_reviews(settings: Settings, taxonomy: Taxonomy, run_id: str, run_dir: Path, held_out) -> dict[str, Any]:
    """Fit, check and save the review student; ``held_out(text)`` says which texts it must not learn from."""
    cfg, extraction = settings.distill, settings.extraction
    texts = review_pool(cfg.review_pool_per_source)
    offline = offline_reader(settings)
    read, teacher_stats = teacher_readings(settings, texts, offline)
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
    same_tags = [set(p.tags if p else ()) == set(t.tags if t else ()) for p, t in zip(predicted, taught)]
    metrics = {
        "pool_texts": len(texts), "train_texts": len(train), "holdout_texts": len(holdout),
        "agreement_holdout_tags": round(sum(same_tags) / max(len(same_tags), 1), 4),
        "keyword_f1_vs_teacher": _keyword_f1(predicted, taught),
        "review_student_reviews_per_s": round(per_s, 1), "offline_reviews_per_s": round(offline_per_s, 1),
        "speedup_over_offline": round(per_s / offline_per_s, 1), **teacher_stats,
    }
    model.header.update({"run_id": run_id, "teacher": "offline" + (f"+{cfg.llm_teacher}" if cfg.llm_teacher else ""),
                         **metrics})
    path = model.save(run_dir / REVIEW_STUDENT_FILE)
    log.info("review student: %d reviews (%d held out), tag-set agreement %.3f, keyword F1 vs teacher %.3f, "
             "%.0f reviews/s (offline teacher %.0f/s)", len(texts), len(holdout), metrics["agreement_holdout_tags"],
             metrics["keyword_f1_vs_teacher"], per_s, offline_per_s)
    return {"review_student_file": str(path), "review_student": metrics}
