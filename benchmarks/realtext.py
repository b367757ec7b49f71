"""Text understanding on real text the project did not write (``hybridrec bench realtext``).

Grades keyword and aspect-tag extraction on the hand-labelled real reviews (Yelp, NSMC, Korean
place reviews written by hand) and query intent and tags on hand-written real-world search queries
(``benchmarks/datasets/realtext``), one split at a time: tune on ``validation``, score ``test`` once.
Every extractor runs beside the simplest baselines on the same texts: TF-IDF for keywords, the
majority intent for queries. Writes ``benchmarks/results/realtext-<split>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import typing
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from hybridrec.benchmarks import positive, write_result
from hybridrec.config import ExtractionSettings, Settings, load_settings
from hybridrec.evalsets import (
    PLACE_ASPECTS, InjectionCase, QueryCase, ReviewCase, load_injections, load_queries, load_reviews, normalise,
)
from hybridrec.models.extraction import KeywordSet, Outcome, QueryTags, make_backends
from hybridrec.models.extraction.combined import COMBINE_RULES, merge_review, vote_query

REVIEW_GROUPS = {"en": lambda c: c.lang == "en", "ko": lambda c: c.lang == "ko",
                 "ko_place": lambda c: c.source == "handwritten"}
QUERY_GROUPS = {"all": lambda c: True, "en": lambda c: c.lang == "en", "ko": lambda c: c.lang != "en"}
ANSWER_CACHE = "cache/realtext-answers.sqlite"  # under home, when extraction.answer_cache is not set
_TOKEN = re.compile(r"[\w'’-]+")
# The baseline's stop list: English function words only (a plain TF-IDF, nothing of the project's lists).
_BASELINE_STOP = frozenset("""a an and are as at be been but by can did do for from had has have he her his i if in
into is it its just me my no not of on or our out so than that the their them then there they this to too up was
we were what when which who will with you your very all also got get would could our us one""".split())


def prf(true_positive: int, predicted: int, relevant: int) -> dict[str, float]:
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / relevant if relevant else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def _aspect_tags(tags: frozenset[str] | set[str]) -> set[str]:
    return {t for t in tags if t.split("/")[0] in PLACE_ASPECTS}


def keyword_matches(predicted: str, gold: str) -> bool:
    """Same keyword when one normalised form holds the other and the shorter is at least half as long."""
    p, g = normalise(predicted), normalise(gold)
    if not p or not g:
        return False
    short, long_ = sorted((p, g), key=len)
    return short in long_ and len(short) * 2 >= len(long_)


def review_scores(cases: Sequence[ReviewCase], tags: Sequence[set[str] | None],
                  keywords: Sequence[list[str] | None]) -> dict[str, Any]:
    """Aspect-tag and all-tag P/R/F1 (micro), negated tags asserted, keyword P/R/F1, per language group."""
    out: dict[str, Any] = {}
    for group, member in REVIEW_GROUPS.items():
        idx = [i for i, c in enumerate(cases) if member(c)]
        if not idx:
            continue
        counts = Counter()
        for i in idx:
            gold, predicted = cases[i].tags, tags[i] or set()
            counts["aspect_tp"] += len(_aspect_tags(gold) & _aspect_tags(predicted))
            counts["aspect_pred"] += len(_aspect_tags(predicted))
            counts["aspect_gold"] += len(_aspect_tags(gold))
            counts["all_tp"] += len(gold & predicted)
            counts["all_pred"] += len(predicted)
            counts["all_gold"] += len(gold)
            counts["negated"] += len(cases[i].negated)
            counts["negated_asserted"] += len(cases[i].negated & predicted)
            counts["rejected"] += tags[i] is None
            found = keywords[i] or []
            counts["kw_pred"] += len(found)
            counts["kw_gold"] += len(cases[i].keywords)
            counts["kw_tp_pred"] += sum(any(keyword_matches(k, g) for g in cases[i].keywords) for k in found)
            counts["kw_tp_gold"] += sum(any(keyword_matches(k, g) for k in found) for g in cases[i].keywords)
        kw_p = counts["kw_tp_pred"] / counts["kw_pred"] if counts["kw_pred"] else 0.0
        kw_r = counts["kw_tp_gold"] / counts["kw_gold"] if counts["kw_gold"] else 0.0
        out[group] = {
            "texts": len(idx),
            "aspect_tags": prf(counts["aspect_tp"], counts["aspect_pred"], counts["aspect_gold"]),
            "all_tags": prf(counts["all_tp"], counts["all_pred"], counts["all_gold"]),
            "negated_asserted_rate": round(counts["negated_asserted"] / counts["negated"], 4) if counts["negated"] else None,
            "keywords": {"precision": round(kw_p, 4), "recall": round(kw_r, 4),
                         "f1": round(2 * kw_p * kw_r / (kw_p + kw_r), 4) if kw_p + kw_r else 0.0},
            "rejected_share": round(counts["rejected"] / len(idx), 4),
        }
    return out


def query_scores(cases: Sequence[QueryCase], predictions: Sequence[QueryTags | None]) -> dict[str, Any]:
    """Intent accuracy and per-intent recall, interests outside the taxonomy kept, tag P/R/F1 (micro)."""
    out: dict[str, Any] = {}
    for group, member in QUERY_GROUPS.items():
        idx = [i for i, c in enumerate(cases) if member(c)]
        if not idx:
            continue
        intent = {i: (predictions[i].intent.value if predictions[i] is not None else "rejected") for i in idx}
        by_gold: dict[str, list[int]] = {}
        for i in idx:
            by_gold.setdefault(cases[i].intent, []).append(i)
        interest = by_gold.get("interest", [])
        outside = [i for i in interest if cases[i].outside_taxonomy]
        tagged = [i for i in interest if cases[i].tags]
        tp = sum(len(cases[i].tags & set(predictions[i].tags)) for i in tagged if predictions[i] is not None)
        predicted = sum(len(predictions[i].tags) for i in tagged if predictions[i] is not None)
        out[group] = {
            "queries": len(idx),
            "intent_accuracy": round(sum(intent[i] == cases[i].intent for i in idx) / len(idx), 4),
            **{f"{name}_recall": round(sum(intent[i] == name for i in members) / len(members), 4)
               for name, members in sorted(by_gold.items())},
            "interest_as_utility_or_navigational": round(
                sum(intent[i] in ("utility", "navigational") for i in interest) / len(interest), 4) if interest else None,
            "out_of_taxonomy_recall": round(sum(intent[i] == "interest" for i in outside) / len(outside), 4)
            if outside else None,
            "interest_tags": prf(tp, predicted, sum(len(cases[i].tags) for i in tagged)),
            "rejected_share": round(sum(intent[i] == "rejected" for i in idx) / len(idx), 4),
            "intent_calibration": calibration(
                [(predictions[i].confidence, intent[i] == cases[i].intent) for i in idx if predictions[i] is not None]),
        }
    return out


def calibration(pairs: Sequence[tuple[float, bool]], bins: int = 5) -> dict[str, Any]:
    """Is a confident answer more often right? Accuracy per confidence bin, and the expected calibration
    error (the bins' |accuracy - mean confidence| weighted by their share). Rejected answers have no
    confidence and are left out; a reader whose confidence never varies has no calibration to measure."""
    if len({c for c, _ in pairs}) <= 1:
        return {"ece": None, "bins": [], "note": "one confidence for every answer"}
    table, error = [], 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [(c, ok) for c, ok in pairs if low <= c < high or (b == bins - 1 and c == 1.0)]
        if not members:
            continue
        accuracy = sum(ok for _, ok in members) / len(members)
        mean = sum(c for c, _ in members) / len(members)
        error += len(members) / len(pairs) * abs(accuracy - mean)
        table.append({"confidence": f"{low:.1f}-{high:.1f}", "queries": len(members), "accuracy": round(accuracy, 4),
                      "mean_confidence": round(mean, 4)})
    return {"ece": round(error, 4), "bins": table}


def redteam_scores(cases: Sequence[InjectionCase], tags: Sequence[set[str] | None]) -> dict[str, Any]:
    """Injected tags accepted (must be 0) and the genuine content's tags kept, attacks and controls apart."""
    attacks = [i for i, c in enumerate(cases) if c.injected]
    controls = [i for i, c in enumerate(cases) if not c.injected]

    def kept(idx: list[int]) -> float | None:
        total = sum(len(cases[i].genuine) for i in idx)
        return round(sum(len(cases[i].genuine & (tags[i] or set())) for i in idx) / total, 4) if total else None

    accepted = [cases[i].id for i in attacks if cases[i].injected & (tags[i] or set())]
    return {"attacks": len(attacks), "controls": len(controls),
            "redteam_injected_accepted": sum(len(cases[i].injected & (tags[i] or set())) for i in attacks),
            "attacks_with_an_injected_tag": accepted,
            "genuine_tags_kept_under_attack": kept(attacks), "genuine_tags_kept_in_controls": kept(controls)}


def tfidf_keywords(texts: Sequence[str], background: Sequence[str], k: int) -> list[list[str]]:
    """The plain baseline: word 1-2-grams (no stop word at either end) by tf·idf over texts + background."""
    def grams(text: str) -> list[str]:
        words = _TOKEN.findall(text.casefold())
        out = [w for w in words if w not in _BASELINE_STOP and len(w) > 1]
        out += [f"{a} {b}" for a, b in zip(words, words[1:]) if a not in _BASELINE_STOP and b not in _BASELINE_STOP]
        return out

    corpus = [set(grams(t)) for t in (*background, *texts)]
    df = Counter(g for doc in corpus for g in doc)
    n = len(corpus)
    picked = []
    for text in texts:
        tf = Counter(grams(text))
        scored = sorted(tf, key=lambda g: (-tf[g] * math.log(n / (1 + df[g])), g))
        picked.append(scored[:k])
    return picked


def _timed(fn: Callable[[], list], n: int) -> tuple[list, float]:
    start = time.perf_counter()
    result = fn()
    return result, n / max(time.perf_counter() - start, 1e-9)


def _scores(reviews: Sequence[ReviewCase], queries: Sequence[QueryCase], read: list[Outcome[KeywordSet]],
            tagged: list[Outcome[QueryTags]]) -> dict[str, Any]:
    sets = [o.value for o in read]
    return {
        "reviews": review_scores(reviews, [set(s.tags) if s else None for s in sets],
                                 [[k.text for k in s.keywords] if s else None for s in sets]),
        "queries": query_scores(queries, [o.value for o in tagged]),
        "rejected_reasons": dict(Counter(o.reason for o in (*read, *tagged) if o.reason)),
        "json_valid_rate": round(sum(o.reason not in ("not_json", "not_object") for o in (*read, *tagged))
                                 / max(len(read) + len(tagged), 1), 4),
    }


def redteam_tags(extractor, tagger, cases: Sequence[InjectionCase]) -> list[set[str] | None]:
    reviews = [c.text for c in cases if c.kind == "review"]
    read = iter(extractor.extract(reviews))
    tagged = iter(tagger.tag_many([(c.text, []) for c in cases if c.kind == "query"]))
    out = []
    for case in cases:
        outcome = next(read) if case.kind == "review" else next(tagged)
        out.append(set(outcome.value.tags) if outcome.value is not None else None)
    return out


def run_backend(settings: Settings, reviews: Sequence[ReviewCase], queries: Sequence[QueryCase],
                injections: Sequence[InjectionCase] = ()) -> dict[str, Any]:
    """Scores, speed and the raw outcomes (``_outcomes``) of one backend as configured."""
    started = time.perf_counter()
    extractor, tagger = make_backends(settings)
    load_s = time.perf_counter() - started
    read, reviews_per_s = _timed(lambda: extractor.extract([c.text for c in reviews]), len(reviews))
    tagged, queries_per_s = _timed(lambda: tagger.tag_many([(c.text, []) for c in queries]), len(queries))
    cache = getattr(extractor, "model", None)  # a generative backend's answer cache, if any
    hits = getattr(cache, "hits", 0)
    redteam = redteam_scores(injections, redteam_tags(extractor, tagger, injections)) if injections else None
    speed = {"reviews_per_s": round(reviews_per_s, 3), "queries_per_s": round(queries_per_s, 3)} if not hits else {
        "reviews_per_s": None, "queries_per_s": None,  # answers came from the cache: its speed, not the model's
        "speed_note": f"{hits} answers from the answer cache: speeds are those of the run that asked the model"}
    return {"backend": settings.extraction.backend, "load_s": round(load_s, 2), **_scores(reviews, queries, read, tagged),
            "redteam": redteam, **speed, "_outcomes": (read, tagged),
            **({"answer_cache": {"hits": hits, "misses": cache.misses}} if cache is not None and hasattr(cache, "hits")
               else {})}


def combined(generative: dict[str, Any], offline: dict[str, Any], settings: Settings, reviews: Sequence[ReviewCase],
             queries: Sequence[QueryCase], rule: str) -> dict[str, Any]:
    """The model's answers combined with the offline reader's by ``rule`` (models.extraction.combined),
    from both runs' outcomes."""
    (model_read, model_tagged), (offline_read, offline_tagged) = generative["_outcomes"], offline["_outcomes"]
    read = [merge_review(m, o, settings.extraction.max_keywords, rule) for m, o in zip(model_read, offline_read)]
    tagged = [vote_query(m, o, rule) for m, o in zip(model_tagged, offline_tagged)]
    return _scores(reviews, queries, read, tagged)


def baselines(reviews: Sequence[ReviewCase], queries: Sequence[QueryCase], max_keywords: int) -> dict[str, Any]:
    from hybridrec.models.extraction.schema import QueryTags as Tags

    background = [c.text for c in load_reviews()]  # the whole labelled pool as document frequencies, labels unused
    keywords = tfidf_keywords([c.text for c in reviews], background, max_keywords)
    majority = Counter(c.intent for c in queries).most_common(1)[0][0]
    return {
        "tfidf": {"reviews": review_scores(reviews, [set() for _ in reviews], keywords)},
        "majority_intent": {"intent": majority,
                            "queries": query_scores(queries, [Tags(intent=majority) for _ in queries])},
    }


def run_benchmark(settings: Settings, split: str = "validation", backends: Sequence[str] = ("offline",),
                  limit: int | None = None, llm_model: str | None = None, redteam: bool = True) -> dict[str, Any]:
    """``limit``: at most this many reviews per source and language and queries per language (the LLM is slow).
    The red-team set (attacks and controls) is run whole by every backend unless ``redteam`` is off."""
    injections = [c for c in load_injections() if c.split == split] if redteam else []
    if limit:
        injections = [c for lang in ("en", "ko") for c in [i for i in injections if i.lang == lang][:limit]]
    reviews = [c for c in load_reviews() if c.split == split]
    queries = [c for c in load_queries() if c.split == split]
    if limit:  # per source, so the hand-written Korean place reviews are in every sample
        sources = sorted({(r.lang, r.source) for r in reviews})
        reviews = [c for lang, source in sources
                   for c in [r for r in reviews if (r.lang, r.source) == (lang, source)][:limit]]
        queries = [c for lang in ("en", "ko", "mixed") for c in [q for q in queries if q.lang == lang][:limit]]
    metrics: dict[str, Any] = {"split": split, "reviews": len(reviews), "queries": len(queries),
                               "baselines": baselines(reviews, queries, settings.extraction.max_keywords)}
    offline_settings = settings.model_copy(
        update={"extraction": settings.extraction.model_copy(update={"backend": "offline"})})
    offline = run_backend(offline_settings, reviews, queries, injections)
    metrics["offline"] = offline
    for backend in (b for b in backends if b != "offline"):
        # every answer is kept by its question: a re-run (a crash in scoring, a new metric) asks the model nothing
        overrides: dict[str, Any] = {"backend": backend, "combine_offline": False,
                                     "answer_cache": settings.extraction.answer_cache or ANSWER_CACHE}
        if llm_model and backend == "llamacpp":
            overrides["llamacpp"] = settings.extraction.llamacpp.model_copy(update={"model": llm_model})
        cfg = settings.model_copy(update={"extraction": settings.extraction.model_copy(update=overrides)})
        name = f"llamacpp:{llm_model or cfg.extraction.llamacpp.model}" if backend == "llamacpp" else backend
        print(f"realtext: {name} on {len(reviews)} reviews and {len(queries)} queries ({split})", file=sys.stderr)
        metrics[name] = run_backend(cfg, reviews, queries, injections)
        for rule in COMBINE_RULES:
            metrics[f"{name}+offline:{rule}"] = combined(metrics[name], offline, settings, reviews, queries, rule)
    metrics["student"] = student_scores(settings, reviews, queries)
    for value in metrics.values():
        if isinstance(value, dict):
            value.pop("_outcomes", None)
    return metrics


def student_scores(settings: Settings, reviews: Sequence[ReviewCase], queries: Sequence[QueryCase]) -> dict[str, Any]:
    """The distilled students of the newest distill run, if one exists: the query student (the stream's
    hot path) and the review student (the bulk reader of reviews), each read cold on these texts."""
    from hybridrec.batch.distill import load_review_student, load_student
    from hybridrec.models.extraction.schema import QueryTags as Tags

    try:
        student = load_student(settings)
    except Exception as err:  # noqa: BLE001 (no run yet, or no lake: reported, not fatal)
        return {"skipped": f"no distilled student to load: {err}"}
    predicted, per_s = _timed(lambda: [student.predict(q.text) for q in queries], len(queries))
    tagged = [Tags(intent=p.intent, tags=p.tags, confidence=p.confidence) for p in predicted]
    out = {"run_id": student.header.get("run_id"), "teacher": student.header.get("teacher"),
           "queries": query_scores(queries, tagged), "queries_per_s": round(per_s, 1)}
    try:
        reader = load_review_student(settings)
    except (KeyError, OSError, ValueError) as err:  # a distill run from before the review student
        return {**out, "reviews_skipped": f"no review student in that run: {err!r}"}
    read, reviews_per_s = _timed(lambda: reader.extract([c.text for c in reviews]), len(reviews))
    sets = [o.value for o in read]
    return {**out, "reviews": review_scores(reviews, [set(s.tags) if s else None for s in sets],
                                            [[k.text for k in s.keywords] if s else None for s in sets]),
            "reviews_per_s": round(reviews_per_s, 1), "review_teacher": reader.header.get("teacher")}


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_markdown(metrics: dict[str, Any]) -> str:
    """The README's table of one results file: every reader in one row, the baselines beside them."""
    rows = ["| reader | aspect-tag F1 en / ko (precision) | all-tag F1 en / ko | keyword F1 en / ko | query intent "
            "accuracy | utility recall | interests outside the taxonomy kept | interests called utility/nav. "
            "| query tag F1 | injected tags accepted (attacks) | reviews/s, queries/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    readers = [(name, value) for name, value in metrics.items()
               if isinstance(value, dict) and ("reviews" in value or "queries" in value) and name != "baselines"]
    tfidf = metrics["baselines"]["tfidf"]["reviews"]
    majority = metrics["baselines"]["majority_intent"]["queries"]["all"]
    for name, value in [*readers, ("TF-IDF / majority intent (baselines)", {"reviews": tfidf, "queries": {"all": majority}})]:
        reviews, queries = value.get("reviews") or {}, (value.get("queries") or {}).get("all") or {}
        en, ko = reviews.get("en", {}), reviews.get("ko", {})

        def pair(key: str, sub: str = "f1") -> str:
            if not en:
                return "–"
            return f"{_fmt(en[key][sub])} / {_fmt(ko[key][sub])}"

        aspect = f"{pair('aspect_tags')} ({pair('aspect_tags', 'precision')})" if en and "TF-IDF" not in name else "–"
        redteam = value.get("redteam") or {}
        speed = ", ".join(_fmt(value.get(k), 1) for k in ("reviews_per_s", "queries_per_s") if value.get(k))
        rows.append(" | ".join([
            f"| {name}", aspect, pair("all_tags") if "TF-IDF" not in name else "–", pair("keywords"),
            _fmt(queries.get("intent_accuracy")), _fmt(queries.get("utility_recall")),
            _fmt(queries.get("out_of_taxonomy_recall")), _fmt(queries.get("interest_as_utility_or_navigational")),
            _fmt((queries.get("interest_tags") or {}).get("f1")) if "majority" not in name else "–",
            f"{redteam['redteam_injected_accepted']} ({redteam['attacks']})" if redteam else "–",
            speed or "–"]) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("validation", "test"), default="validation")
    parser.add_argument("--backends", default="offline",
                        help="comma-separated: offline (always run), llamacpp, http; each generative one is "
                             "reported alone and combined with the offline reader by each rule (<name>+offline:<rule>)")
    parser.add_argument("--limit", type=positive(int), default=None,
                        help="reviews per source, queries and attacks per language (the LLM is slow)")
    parser.add_argument("--llm-model", default=None, help="a catalogued GGUF model instead of the configured one")
    parser.add_argument("--no-redteam", action="store_true", help="skip the red-team set")
    parser.add_argument("--report", default=None, help="print the markdown table of this results file and stop")
    parser.add_argument("--out", default=None, help="results file stem (default realtext-<split>)")
    args = parser.parse_args(argv)
    known = typing.get_args(ExtractionSettings.model_fields["backend"].annotation)
    if unknown := [b for b in args.backends.split(",") if b and b not in known]:
        parser.error(f"--backends: unknown {', '.join(unknown)} (choose from {', '.join(known)})")
    if args.report:
        try:
            report = json.loads(open(args.report, encoding="utf-8").read())
        except (OSError, ValueError) as err:
            parser.error(f"--report: {err}")
        print(render_markdown(report))
        return 0
    settings = load_settings()
    load_at_start = os.getloadavg()
    metrics = run_benchmark(settings, args.split, [b for b in args.backends.split(",") if b], args.limit,
                            args.llm_model, not args.no_redteam)
    path = write_result(args.out or f"realtext-{args.split}", "realtext", "benchmarks/datasets/realtext",
                        "hybridrec bench realtext " + " ".join(argv if argv is not None else sys.argv[1:]), metrics,
                        settings=settings, load_at_start=load_at_start)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
