"""Cold start by distillation: ``hybridrec distill``.

Steps (each logged and timed; the run and its files land in the model registry):

1. ``gold``: load and validate the curated gold set (``hybridrec/query_gold.yaml``), evaluation only;
   ``inputs``: the search log's distinct texts and the clip texts, read by Spark in one session.
2. ``teacher-labels``: the offline reader labels the search log's distinct texts and a generated pool.
   Each log text is read twice, alone and (from the extraction job) with the documents that answered
   each of its searches. With ``distill.llm_teacher`` set, a local LLM also labels the texts it has not
   labelled before, most searched first, within a budget of texts and seconds (:mod:`.llm_teacher`,
   ledger ``ops.teacher_labels``); where both read a text they vote (``extraction.combine_offline``).
   Noisy labels are dropped with a reason: ``rejected`` (failed validation), ``low-confidence``,
   ``answer-disagreement`` (the text's searches, read with their own results, disagree),
   ``prompt-disagreement`` (alone vs. with results), ``outside-taxonomy``.
3. ``student``: the query student learns intent and interest tags from the kept labels (a hash-held-out
   share measures agreement with the teacher on texts it never saw).
4. ``topic-classifier``: the hierarchical topic classifier learns from clip texts whose catalog topic
   the extraction confirms, and from single-interest teacher labels.
5. ``evaluate``: teacher and student on the gold set; files and metrics into the registry.

Streaming tags searches with the student (``streaming.query_tagger: student``); the retrain publishes
the classifier's topic path of each clip, which serving's topic-consistency rule checks.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pandas as pd
import yaml
from tqdm import tqdm

from hybridrec.batch.llm_teacher import LlmReviewTeacher, LlmTeacher, teacher_settings, text_key
from hybridrec.batch.query_pool import QueryPool
from hybridrec.batch.review_distill import distill_reviews
from hybridrec.config import Settings
from hybridrec.contract import CLIPS, INTENTS, ITEM_KEYWORDS, QUERY_TAGS, SEARCH_QUERIES, QueryIntent
from hybridrec.evalsets import normalise
from hybridrec.lake import Lake
from hybridrec.models.extraction import make_backends
from hybridrec.models.extraction.combined import vote_query
from hybridrec.models.extraction.schema import Outcome, QueryTags
from hybridrec.models.student import QueryStudent, TopicClassifier
from hybridrec.pipeline import Step
from hybridrec.registry import Registry, run_dir as registry_run_dir
from hybridrec.runinfo import new_run
from hybridrec.taxonomy import Taxonomy, load_taxonomy, most_specific

log = logging.getLogger(__name__)

GOLD_FILE = "query_gold.yaml"
STUDENT_FILE, CLASSIFIER_FILE = "query-student.npz", "topic-classifier.npz"
KEPT = "kept"
TEACHER_BATCH = 256  # texts per call to the teacher

Tagging = tuple[str, tuple[str, ...]]  # (intent, interest tags)


@dataclass(frozen=True)
class GoldQuery:
    text: str
    intent: str
    tags: tuple[str, ...]
    case: str


def load_gold(taxonomy: Taxonomy | None = None, text: str | None = None) -> tuple[int, list[GoldQuery]]:
    """(version, rows) of the gold set, checked: known intents, topic tags only for interest queries, no repeats."""
    taxonomy = taxonomy or load_taxonomy()
    data = yaml.safe_load(text if text is not None else resources.files("hybridrec").joinpath(GOLD_FILE).read_text("utf-8"))
    rows = [GoldQuery(r["q"], r["intent"], tuple(r.get("tags") or ()), r["case"]) for r in data["queries"]]
    problems = []
    for row in rows:
        if row.intent not in INTENTS:
            problems.append(f"{row.text!r}: unknown intent {row.intent!r}")
        if bool(row.tags) != (row.intent == QueryIntent.INTEREST.value):
            problems.append(f"{row.text!r}: an interest query needs tags and only an interest query has them")
        problems += [f"{row.text!r}: {t!r} is not a topic of the taxonomy" for t in row.tags
                     if t not in taxonomy or taxonomy.get(t).aspect != "topic"]
    repeated = [t for t, n in Counter(r.text for r in rows).items() if n > 1]
    problems += [f"{t!r} appears more than once" for t in repeated]
    if problems:
        raise ValueError("gold set invalid: " + "; ".join(problems))
    return int(data["version"]), rows


def interest_tags(taxonomy: Taxonomy, tags: Sequence[str]) -> tuple[str, ...]:
    """The interests tags stand for, at topic level (a dish → its category), most specific only."""
    return tuple(sorted(most_specific(taxonomy.topic_of(t) for t in tags if t in taxonomy)))


# ---------------------------------------------------------------- evaluation on the gold set

def score_tagger(predict: Callable[[str], Tagging], gold: Sequence[GoldQuery]) -> dict[str, Any]:
    """Micro tag F1 (over every gold query: tags on a utility query are false positives), intent accuracy,
    and F1 per hard case."""
    predictions = [predict(g.text) for g in gold]
    return {**_f1_and_accuracy(gold, predictions),
            "by_case": {case: _f1_and_accuracy(*zip(*[(g, p) for g, p in zip(gold, predictions) if g.case == case]))
                        for case in sorted({g.case for g in gold})},
            "predictions": predictions}


def _f1_and_accuracy(gold: Sequence[GoldQuery], predictions: Sequence[Tagging]) -> dict[str, float]:
    tp = fp = fn = 0
    for g, (_, tags) in zip(gold, predictions):
        tp += len(set(tags) & set(g.tags))
        fp += len(set(tags) - set(g.tags))
        fn += len(set(g.tags) - set(tags))
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"tag_f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
            "tag_precision": round(precision, 4), "tag_recall": round(recall, 4),
            "intent_accuracy": round(sum(g.intent == p[0] for g, p in zip(gold, predictions)) / max(len(gold), 1), 4),
            "queries": len(gold)}


def agreement(a: Sequence[Tagging], b: Sequence[Tagging]) -> float:
    """Share of queries on which two taggers give the same intent and the same tag set."""
    return round(sum(x[0] == y[0] and set(x[1]) == set(y[1]) for x, y in zip(a, b)) / max(len(a), 1), 4)


Label = tuple[str | None, tuple[str, ...], float, str | None]  # intent, tags, confidence, rejection reason


def as_label(outcome: Outcome[QueryTags]) -> Label:
    value = outcome.value
    return ((None, (), 0.0, outcome.reason) if value is None else
            (str(QueryIntent(value.intent).value), tuple(value.tags), float(value.confidence), None))


class TeacherTagger:
    """The bulk teacher: the offline reader, which labels every text (the LLM teacher, when configured,
    labels a budget of them: :mod:`.llm_teacher`). Answers at interest level like the gold set."""

    def __init__(self, settings: Settings, threads: int | None = None):
        from hybridrec.models.extraction import make_query_tagger

        offline = settings.extraction.model_copy(update={"backend": "offline"})
        self.taxonomy = load_taxonomy()
        self.tagger = make_query_tagger(settings.model_copy(update={"extraction": offline}), threads)
        self.backend = self.tagger.backend

    def outcomes(self, texts: Sequence[str]) -> list[Outcome[QueryTags]]:
        return self.tagger.tag_many([(t, ()) for t in texts])

    def label(self, texts: Sequence[str]) -> list[Label]:
        """(intent, tags, confidence, rejection reason) per text, read alone."""
        return [as_label(o) for o in self.outcomes(texts)]

    def __call__(self, text: str) -> Tagging:
        intent, tags, _, _ = self.label([text])[0]
        return (intent or QueryIntent.NAVIGATIONAL.value), interest_tags(self.taxonomy, tags)


def student_tagging(student: QueryStudent) -> Callable[[str], Tagging]:
    def predict(text: str) -> Tagging:
        found = student.predict(text)
        return found.intent.value, tuple(sorted(found.tags))
    return predict


# ---------------------------------------------------------------- teacher labels and their cleaning

def read_inputs(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(log queries, clips) from the lake in one Spark session."""
    from hybridrec.spark import spark_job

    with spark_job(settings, "hybridrec-distill") as spark:
        cfg = settings.distill
        return read_log_queries(spark, cfg.max_log_queries), read_clips(spark, cfg.max_clips)


def read_log_queries(spark, limit: int) -> pd.DataFrame:
    """The search log's most frequent distinct texts with the extraction's label of each (read with the
    documents that answered it): the majority label, its share of the text's searches, mean confidence."""
    return spark.sql(f"""
        WITH by_label AS (
            SELECT q.text, t.intent, to_json(array_sort(t.tags)) AS tags, count(*) AS n,
                   avg(t.confidence) AS confidence
            FROM {SEARCH_QUERIES.qualified_name} q
            JOIN {QUERY_TAGS.qualified_name} t ON q.query_id = t.query_id
            GROUP BY q.text, t.intent, to_json(array_sort(t.tags))),
        ranked AS (
            SELECT *, sum(n) OVER (PARTITION BY text) AS searches,
                   row_number() OVER (PARTITION BY text ORDER BY n DESC, intent, tags) AS position
            FROM by_label)
        SELECT text, intent AS answered_intent, tags AS answered_tags, confidence AS answered_confidence,
               n / searches AS answer_agreement, searches
        FROM ranked WHERE position = 1
        ORDER BY searches DESC, text LIMIT {limit}""").toPandas()


def read_clips(spark, limit: int) -> pd.DataFrame:
    """Clip texts with their catalog topic and how many of the extraction's topic tags agree with it."""
    return spark.sql(f"""
        SELECT concat_ws('. ', c.title, c.description) AS text, c.topic_path,
               count(k.tag) AS topic_keywords,
               count_if(k.tag = c.topic_path OR startswith(k.tag, concat(c.topic_path, '/'))
                        OR startswith(c.topic_path, concat(k.tag, '/'))) AS agreeing
        FROM {CLIPS.qualified_name} c
        LEFT JOIN {ITEM_KEYWORDS.qualified_name} k
          ON k.item_id = c.item_id AND k.surface = 'clip' AND k.aspect = 'topic'
        GROUP BY c.item_id, c.title, c.description, c.topic_path
        ORDER BY xxhash64(c.item_id) LIMIT {limit}""").toPandas()


def clean_labels(labels: pd.DataFrame, taxonomy: Taxonomy, min_confidence: float,
                 min_answer_agreement: float) -> pd.DataFrame:
    """Adds ``intent``/``tags`` (the label kept) and ``status`` (``kept`` or why it was dropped).

    ``labels``: text, source, teacher_intent, teacher_tags, teacher_confidence, teacher_reason and, for
    log texts, answered_intent, answered_tags (JSON), answer_agreement; ``teacher_source`` (``llm`` or
    ``offline``) when an LLM teacher labelled some texts (its labels are not replaced by the answered ones)."""
    intents, tags, statuses = [], [], []
    for row in labels.itertuples(index=False):
        status, intent, kept_tags = KEPT, row.teacher_intent, tuple(row.teacher_tags)
        answered = row.source == "log" and isinstance(row.answered_intent, str)
        by_llm = getattr(row, "teacher_source", "offline") == "llm"
        if row.teacher_reason is not None:
            status = "rejected"
        elif row.teacher_confidence < min_confidence:
            status = "low-confidence"
        elif answered and row.answer_agreement < min_answer_agreement:
            status = "answer-disagreement"
        elif by_llm:
            pass  # the answers were read by the offline reader: another reader, not a better-read label
        elif answered and not _compatible(row.answered_intent, tuple(json.loads(row.answered_tags)), intent, kept_tags):
            status = "prompt-disagreement"
        elif answered:
            intent, kept_tags = row.answered_intent, tuple(json.loads(row.answered_tags))  # the better-read label
        if status == KEPT:
            status, kept_tags = _as_interests(taxonomy, intent, kept_tags)
        intents.append(intent)
        tags.append(tuple(kept_tags))
        statuses.append(status)
    return labels.assign(intent=intents, tags=tags, status=statuses)


def _as_interests(taxonomy: Taxonomy, intent: str, tags: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """(status, interest tags): an interest label needs at least one tag, all of them in the taxonomy
    and standing for a topic; other intents carry none."""
    if intent != QueryIntent.INTEREST.value:
        return KEPT, ()
    if not tags or any(t not in taxonomy for t in tags):
        return "outside-taxonomy", tags
    try:
        return KEPT, interest_tags(taxonomy, tags)
    except ValueError:  # a mood or price tag: no topic above it
        return "outside-taxonomy", tags


def _compatible(intent_a: str, tags_a: tuple[str, ...], intent_b: str, tags_b: tuple[str, ...]) -> bool:
    """Same intent, and every tag of each side equals or refines a tag of the other ("argentina" alone →
    travel/south-america, with travel-clip results → the same or deeper)."""
    def covered(xs: tuple[str, ...], ys: tuple[str, ...]) -> bool:
        return all(any(x == y or Taxonomy.is_ancestor(x, y) or Taxonomy.is_ancestor(y, x) for y in ys) for x in xs)
    return intent_a == intent_b and covered(tags_a, tags_b) and covered(tags_b, tags_a)


def held_out(text: str, share: float) -> bool:
    """By the normalised text, so case, spacing and punctuation variants of one query fall on one side;
    stable across runs and machines (not Python's salted hash)."""
    return zlib.crc32(normalise(text).encode()) % 1000 < share * 1000


# ---------------------------------------------------------------- the job

def distill_job(settings: Settings) -> dict[str, Any]:
    cfg = settings.distill
    lake = Lake(settings)
    for spec in (QUERY_TAGS, ITEM_KEYWORDS):
        if not lake.exists(spec):
            raise RuntimeError(f"{spec.qualified_name} is missing: the teacher's labels come from the "
                               "extraction stage, run `hybridrec batch extract` first")
    run = new_run(settings, "distill")
    registry = Registry(lake, run)
    run_dir = registry_run_dir(settings, run.run_id)
    taxonomy = load_taxonomy()
    context: dict[str, Any] = {"run": run, "run_dir": run_dir}

    @functools.cache
    def generative():
        """The LLM teacher's extractor and tagger, one model loaded once for queries and reviews."""
        return make_backends(teacher_settings(settings))

    def teacher_name(ctx: dict) -> str:
        """Who taught the student: the offline reader, and the LLM where its reading won the vote."""
        return ctx["teacher"].backend + (f"+{ctx['llm'].teacher}" if ctx["llm"] is not None else "")

    def gold(_: dict) -> dict:
        version, rows = load_gold(taxonomy)
        inputs = registry.snapshot_ids([SEARCH_QUERIES, QUERY_TAGS, CLIPS, ITEM_KEYWORDS])
        registry.record("running", input_snapshots=inputs)
        return {"gold_version": version, "gold": rows, "input_snapshots": inputs}

    def inputs(_: dict) -> dict:
        log_queries, clips = read_inputs(settings)
        return {"log_queries": log_queries, "clips": clips}

    def teacher_labels(ctx: dict) -> dict:
        teacher = TeacherTagger(settings)
        log_texts = ctx["log_queries"].assign(source="log")
        pool = pd.DataFrame({"text": QueryPool(taxonomy, cfg.seed).write(cfg.pool_size), "source": "pool"})
        labels = pd.concat([log_texts, pool[~pool["text"].isin(log_texts["text"])]], ignore_index=True)
        texts, offline = labels["text"].tolist(), []
        with tqdm(total=len(texts), desc="teacher labels", unit="query", mininterval=5, disable=None) as progress:
            for start in range(0, len(texts), TEACHER_BATCH):
                offline += teacher.outcomes(texts[start:start + TEACHER_BATCH])
                progress.update(min(TEACHER_BATCH, len(texts) - start))
        read, sources, llm = [as_label(o) for o in offline], ["offline"] * len(texts), None
        if cfg.llm_teacher:  # the log's texts come first, most searched first: the budget goes where users are
            llm = LlmTeacher(settings, tagger=generative()[1]).label(texts, lake, run)
            for i, text in enumerate(texts):
                answer = llm.outcomes.get(text_key(text))
                if answer is None or answer.value is None:  # not labelled, or rejected: the offline label stands
                    continue
                chosen = (vote_query(answer, offline[i], settings.extraction.combine_rule)
                          if settings.extraction.combine_offline else answer)
                if offline[i].value is None or as_label(chosen)[:2] != as_label(offline[i])[:2]:
                    read[i], sources[i] = as_label(chosen), "llm"  # the model's intent or tags won
        labels["teacher_intent"], labels["teacher_tags"], labels["teacher_confidence"], labels["teacher_reason"] = (
            [r[0] for r in read], [r[1] for r in read], [r[2] for r in read], [r[3] for r in read])
        labels["teacher_source"] = sources
        labels = clean_labels(labels, taxonomy, cfg.min_teacher_confidence, cfg.min_answer_agreement)
        labels["held_out"] = [held_out(t, cfg.holdout_share) for t in labels["text"]]
        counts = {f"{source}/{status}": int(n) for (source, status), n in
                  labels.groupby(["source", "status"]).size().items()}
        log.info("teacher (%s) labelled %d texts: %s", teacher.backend, len(labels), counts)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "teacher-labels.parquet"
        labels.assign(teacher_tags=labels["teacher_tags"].map(list), tags=labels["tags"].map(list)).to_parquet(path)
        return {"teacher": teacher, "labels": labels, "label_counts": counts, "labels_file": str(path), "llm": llm}

    def student(ctx: dict) -> dict:
        labels = ctx["labels"]
        train = labels[(labels["status"] == KEPT) & ~labels["held_out"]]
        model = QueryStudent.fit(train["text"].tolist(), train["intent"].tolist(), train["tags"].tolist(),
                                 min_count=cfg.min_feature_count, l2=cfg.l2, threshold=cfg.tag_threshold,
                                 max_tags=cfg.max_tags)
        model.header.update({"run_id": run.run_id, "teacher": teacher_name(ctx), "train_texts": len(train)})
        holdout = labels[(labels["status"] == KEPT) & labels["held_out"]]
        predict = student_tagging(model)
        started = time.perf_counter()
        predicted = [predict(t) for t in holdout["text"]]
        student_per_s = len(holdout) / max(time.perf_counter() - started, 1e-9)
        taught = [(i, tuple(sorted(ts))) for i, ts in zip(holdout["intent"], holdout["tags"])]
        holdout_agreement = agreement(predicted, taught)
        by_llm = (holdout["teacher_source"] == "llm").tolist()
        llm_agreement = agreement([p for p, b in zip(predicted, by_llm) if b],
                                  [t for t, b in zip(taught, by_llm) if b]) if any(by_llm) else None
        log.info("student: %d features, %d tags, agreement with the teacher on %d held-out texts %.3f "
                 "(with the LLM's labels on %d: %s)", len(model.vocabulary), len(model.tag_names), len(holdout),
                 holdout_agreement, sum(by_llm), llm_agreement)
        return {"student": model, "holdout_agreement": holdout_agreement, "holdout_texts": len(holdout),
                "agreement_holdout_llm": llm_agreement, "holdout_texts_llm": sum(by_llm),
                "student_queries_per_s": round(student_per_s, 1)}

    def topic_classifier(ctx: dict) -> dict:
        clips = ctx["clips"]
        clip_status = pd.Series("kept", index=clips.index)
        clip_status[clips["topic_keywords"] == 0] = "no-topic-keyword"
        clip_status[(clips["topic_keywords"] > 0) & (clips["agreeing"] == 0)] = "topic-disagreement"
        kept_clips = clips[clip_status == "kept"]
        labels = ctx["labels"]
        single = labels[(labels["status"] == KEPT) & ~labels["held_out"] & (labels["tags"].map(len) == 1)]
        texts = kept_clips["text"].tolist() + single["text"].tolist()
        paths = kept_clips["topic_path"].tolist() + [t[0] for t in single["tags"]]
        model = TopicClassifier.fit(texts, paths, min_count=cfg.min_feature_count, l2=cfg.l2,
                                    min_confidence=cfg.topic_min_confidence)
        counts = {f"clip/{status}": int(n) for status, n in clip_status.value_counts().items()}
        model.header.update({"run_id": run.run_id, "clips": len(kept_clips), "queries": len(single)})
        log.info("topic classifier: %d nodes, trained on %d clips and %d queries; clip labels %s",
                 len(model.heads), len(kept_clips), len(single), counts)
        return {"classifier": model, "clip_label_counts": counts}

    def evaluate(ctx: dict) -> dict:
        rows = ctx["gold"]
        teacher_scores = score_tagger(ctx["teacher"], rows)
        student_scores = score_tagger(student_tagging(ctx["student"]), rows)
        metrics = {
            "gold_version": ctx["gold_version"], "teacher_backend": ctx["teacher"].backend,  # the gold scores' teacher
            "student_teachers": teacher_name(ctx),
            "teacher": {k: v for k, v in teacher_scores.items() if k != "predictions"},
            "student": {k: v for k, v in student_scores.items() if k != "predictions"},
            "gold_agreement": agreement(student_scores["predictions"], teacher_scores["predictions"]),
            "holdout_agreement": ctx["holdout_agreement"], "holdout_texts": ctx["holdout_texts"],
            "student_queries_per_s": ctx["student_queries_per_s"],
            "labels": {**ctx["label_counts"], **ctx["clip_label_counts"]},
            "review_student": ctx["review_student"],
        }
        if (llm := ctx["llm"]) is not None:
            metrics["llm_teacher"] = {
                "teacher": llm.teacher, "ledger_texts": len(llm.outcomes), "labelled_now": llm.labelled_now,
                "seconds_now": round(llm.seconds_now, 1), "budget_exhausted": llm.budget_exhausted,
                "llm_texts_per_s": llm.texts_per_s,
                "labels_used": int((ctx["labels"]["teacher_source"] == "llm").sum()),
                "kept_labels_used": int(((ctx["labels"]["teacher_source"] == "llm")
                                         & (ctx["labels"]["status"] == KEPT)).sum()),
                "agreement_holdout_llm": ctx["agreement_holdout_llm"], "holdout_texts_llm": ctx["holdout_texts_llm"],
                "speedup": round(ctx["student_queries_per_s"] / llm.texts_per_s, 1) if llm.texts_per_s else None,
            }
        ctx["student"].header["gold"] = {"version": ctx["gold_version"], "tag_f1": metrics["student"]["tag_f1"]}
        files = {"student": str(ctx["student"].save(run_dir / STUDENT_FILE)),
                 "topic_classifier": str(ctx["classifier"].save(run_dir / CLASSIFIER_FILE)),
                 "review_student": ctx["review_student_file"],
                 "teacher_labels": ctx["labels_file"]}
        metrics_path = run_dir / "metrics.json"
        metrics_path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
        files["metrics"] = str(metrics_path)
        log.info("gold v%s: teacher tag F1 %.3f intent %.3f | student tag F1 %.3f intent %.3f | agreement %.3f",
                 ctx["gold_version"], metrics["teacher"]["tag_f1"], metrics["teacher"]["intent_accuracy"],
                 metrics["student"]["tag_f1"], metrics["student"]["intent_accuracy"], metrics["gold_agreement"])
        return {"metrics": metrics, "model_files": files}

    def review_student(_: dict) -> dict:
        llm = LlmReviewTeacher(settings, extractor=generative()[0]) if cfg.llm_teacher else None
        return distill_reviews(settings, taxonomy, lake, run, run_dir, lambda text: held_out(text, cfg.holdout_share),
                               llm)

    steps = [
        Step("gold", gold, "load and check the gold set; record input snapshots"),
        Step("inputs", inputs, "the search log's distinct texts with their labels, clip texts (Spark)"),
        Step("teacher-labels", teacher_labels, "teacher labels the search log and a generated pool; drop noisy labels"),
        Step("student", student, "fit the query student (intent + interest tags) on kept labels"),
        Step("topic-classifier", topic_classifier, "fit the hierarchical topic classifier on clips and queries"),
        Step("review-student", review_student, "teacher reads real reviews; fit and check the review student"),
        Step("evaluate", evaluate, "teacher and student on the gold set; save model files"),
    ]
    return registry.run_steps(steps, context, lambda ctx: {
        "model_files": ctx["model_files"], "metrics": {k: v for k, v in ctx["metrics"].items() if k != "labels"}})
