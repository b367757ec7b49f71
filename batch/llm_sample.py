"""The quick start's look at the language model at work: a small sample, side by side with the fast path.

The local model (``extraction.llamacpp``) reads a few real reviews (Yelp and NSMC texts from
``../shared/data`` that are not in the evaluation sets) and the most frequent queries of the search
log, combined with the offline reader as the teacher is; beside each answer stand the offline
reader's (reviews) and the distilled student's (queries), which serve the bulk and the hot path.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from hybridrec.config import Settings
from hybridrec.contract import SEARCH_QUERIES
from hybridrec.evalsets import NSMC_SAMPLE, YELP_SAMPLE, load_queries, load_reviews, normalise, source_rows
from hybridrec.lake import Lake

SOURCES = ((YELP_SAMPLE, "text"), (NSMC_SAMPLE, "review"))


def real_reviews(per_source: int, max_chars: int = 400) -> list[str]:
    """Short real reviews of each source, none of them an evaluation text."""
    held = {normalise(c.text) for c in load_reviews()} | {normalise(c.text) for c in load_queries()}
    picked = []
    for path, field in SOURCES:
        texts = (row.get(field) for row in source_rows(path))
        fitting = (t for t in texts if isinstance(t, str) and 40 <= len(t) <= max_chars and normalise(t) not in held)
        picked += list(itertools.islice(fitting, per_source))
    return picked


def frequent_queries(settings: Settings, n: int) -> list[str]:
    """``n`` queries spread over the log's 200 most frequent (the very top are all site names)."""
    texts = Lake(settings).scan(SEARCH_QUERIES, columns=("text",))["text"].to_pandas()
    top = texts.value_counts().head(200).index.tolist()
    return top[:: max(len(top) // n, 1)][:n]


def llm_sample(settings: Settings, reviews_per_source: int = 2, queries: int = 6, show: int = 3) -> dict[str, Any]:
    from hybridrec.registry import load_student
    from hybridrec.models.extraction import make_backends

    model_only = settings.extraction.model_copy(update={"backend": "llamacpp", "combine_offline": False})
    cfg = settings.model_copy(update={"extraction": model_only})
    started = time.perf_counter()
    extractor, tagger = make_backends(cfg, threads=os.cpu_count())  # the model alone: what it says itself
    reviews, texts = real_reviews(reviews_per_source), frequent_queries(settings, queries)
    read = extractor.extract(reviews)
    tagged = tagger.tag_many([(q, []) for q in texts])
    seconds = time.perf_counter() - started
    offline_extractor, offline_tagger = make_backends(settings.model_copy(update={
        "extraction": settings.extraction.model_copy(update={"backend": "offline"})}))
    offline, offline_tagged = offline_extractor.extract(reviews), offline_tagger.tag_many([(q, []) for q in texts])
    student = load_student(settings)
    print(f"\nlanguage model {cfg.extraction.llamacpp.model} (llama.cpp, alone; the batch path combines it with "
          f"the offline reader by extraction.combine_rule): {len(reviews)} real reviews and {len(texts)} "
          f"search-log queries in {seconds:.0f} s")
    for text, llm, fast in list(zip(reviews, read, offline))[:show]:
        print(f"  review  {text[:90]!r}")
        print(f"    llm      {_keywords(llm)}")
        print(f"    offline  {_keywords(fast)}")
    for text, llm, fast in list(zip(texts, tagged, offline_tagged))[:show]:
        guess = student.predict(text)
        print(f"  query   {text!r}: llm {_intent(llm)} | offline {_intent(fast)} | student {guess.intent.value} "
              f"{list(guess.tags)}")
    outcomes = [*read, *tagged]
    return {"model": cfg.extraction.llamacpp.model, "texts": len(outcomes), "seconds": round(seconds, 1),
            "accepted": sum(o.accepted for o in outcomes),
            "rejected": {o.reason: sum(x.reason == o.reason for x in outcomes) for o in outcomes if o.reason}}


def _intent(outcome) -> str:
    value = outcome.value
    return f"{value.intent.value} {list(value.tags)} p={value.confidence:.2f}" if value else f"rejected: {outcome.reason}"


def _keywords(outcome) -> str:
    if outcome.value is None:
        return f"rejected: {outcome.reason}"
    return ", ".join(f"{k.text}" + (f" [{k.tag}]" if k.tag else "") for k in outcome.value.keywords[:6])
