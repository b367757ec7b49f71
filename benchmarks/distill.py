"""Student vs teacher vs gold, and speed on one core.

* Quality on the gold set (``hybridrec/query_gold.yaml``): micro tag F1 at interest level (tags on a
  utility or navigational query count as false positives) and intent accuracy for the teacher (the
  configured extraction backend, reading the query alone as the hot path would) and the student of
  the distill run in use; agreement of the student with the teacher (same intent and tag set) on the
  gold queries and, from the run, on teacher-labelled texts held out of training.
* Speed: both taggers pinned to one core tag, one at a time, the gold queries and the run's held-out
  teacher-labelled texts, each once: queries/s and p50/p99 latency per query. The student is loaded
  afresh for it, so its word-feature cache starts empty and fills only from the texts measured.

Targets (issue #8): student within 0.05 F1 of the teacher, agreement >= 90 %, >= 50x faster.

    hybridrec bench distill
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hybridrec.batch.distill import (
    TeacherTagger, agreement, load_gold, score_tagger, student_tagging,
)
from hybridrec.benchmarks import write_result
from hybridrec.config import Settings
from hybridrec.models.student import QueryStudent
from hybridrec.registry import distilled_files

log = logging.getLogger("hybridrec.bench.distill")

TARGET_F1_GAP, TARGET_AGREEMENT, TARGET_SPEEDUP = 0.05, 0.90, 50.0


def run_benchmark(settings: Settings) -> dict[str, Any]:
    load_at_start = os.getloadavg()
    run_id, files = distilled_files(settings)
    run_metrics = json.loads(Path(files["metrics"]).read_text())
    version, gold = load_gold()
    student = QueryStudent.load(Path(files["student"]))
    teacher = TeacherTagger(settings, threads=1)
    predict_student = student_tagging(student)
    scores = {"teacher": score_tagger(teacher, gold), "student": score_tagger(predict_student, gold)}
    held_out = pd.read_parquet(files["teacher_labels"], columns=["text", "held_out"])
    texts = list(dict.fromkeys([g.text for g in gold] + held_out.loc[held_out["held_out"], "text"].tolist()))
    fresh_student = student_tagging(QueryStudent.load(Path(files["student"])))
    speed = {name: _speed(fn, texts) for name, fn in (("teacher", teacher), ("student", fresh_student))}

    out: dict[str, Any] = {"student_run": run_id, "gold_version": version, "gold_queries": len(gold),
                           "speed_queries": len(texts), "load_average_1m": os.getloadavg()[0],
                           "teacher_backend": teacher.backend}
    for name in ("teacher", "student"):
        out[f"{name}/tag_f1"] = scores[name]["tag_f1"]
        out[f"{name}/intent_accuracy"] = scores[name]["intent_accuracy"]
        out[f"{name}/queries_per_s"] = speed[name]["queries_per_s"]
        out[f"{name}/p50_ms"], out[f"{name}/p99_ms"] = speed[name]["p50_ms"], speed[name]["p99_ms"]
    out["f1_gap"] = round(scores["teacher"]["tag_f1"] - scores["student"]["tag_f1"], 4)
    out["agreement_gold"] = agreement(scores["student"]["predictions"], scores["teacher"]["predictions"])
    out["agreement_holdout"] = run_metrics["holdout_agreement"]
    out["speedup"] = round(speed["student"]["queries_per_s"] / speed["teacher"]["queries_per_s"], 1)
    out["targets_reached"] = {
        "f1_within_0.05": out["f1_gap"] <= TARGET_F1_GAP,
        "agreement_90": out["agreement_holdout"] >= TARGET_AGREEMENT,
        "speedup_50x": out["speedup"] >= TARGET_SPEEDUP,
    }
    out["by_case"] = {case: {"teacher_f1": scores["teacher"]["by_case"][case]["tag_f1"],
                             "student_f1": scores["student"]["by_case"][case]["tag_f1"],
                             "teacher_intent": scores["teacher"]["by_case"][case]["intent_accuracy"],
                             "student_intent": scores["student"]["by_case"][case]["intent_accuracy"]}
                      for case in scores["student"]["by_case"]}
    out["labels"] = run_metrics["labels"]
    path = write_result("distill-gold", "distill", f"gold set v{version} ({len(gold)} queries, ko+en)",
                        "hybridrec bench distill", out, settings=settings, load_at_start=load_at_start)
    log.info("wrote %s", path)
    return out


def _speed(tag: Callable[[str], Any], texts: list[str]) -> dict[str, float]:
    """Latency per query with the process pinned to one core."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        tag("warm up")  # the first call loads lazily held resources
        latencies = []
        for text in texts:
            started = time.perf_counter()
            tag(text)
            latencies.append(time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, cores)
    ms = np.array(latencies) * 1000
    return {"queries_per_s": round(float(len(ms) / (ms.sum() / 1000)), 1), "p50_ms": round(float(np.percentile(ms, 50)), 4),
            "p99_ms": round(float(np.percentile(ms, 99)), 4)}
