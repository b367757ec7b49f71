"""`hybridrec batch extract`: keywords, tags, query intent and content embeddings into Iceberg, incrementally.

Spark reads reviews, clips and queries, hashes each text together with a fingerprint of the
extractor, and keeps only documents whose (id, hash) the ledger ``ops.extraction_state`` has not
seen: unchanged text is never read twice, a changed text or a changed extractor is read again.
Pending documents are processed in chunks of ``extraction.chunk_docs``; per chunk, model inference
runs batched inside Spark partitions (``mapInPandas``; the model is loaded once per Python worker
and reused across partitions and chunks), the chunk's old output rows are deleted and its new ones
inserted, and the ledger is written last. A crash therefore loses at most the chunk in flight, and
the re-run redoes exactly that chunk without duplicating rows.

After the text sources: places' keywords are aggregated over their reviews (recomputed whole, one
atomic partition overwrite), item embeddings are refreshed where their text changed, and user
embeddings are recomputed from engaged items and interest queries with exponential time decay.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from hybridrec.config import Settings
from hybridrec.contract import (
    CLIPS, CONTENT_TABLES, EVENTS, EXTRACTION_STATE, ITEM_EMBEDDINGS, ITEM_KEYWORDS, PLACES, QUERY_TAGS,
    REVIEW_KEYWORDS, REVIEWS, SEARCH_QUERIES, USER_EMBEDDINGS, TableSpec,
)
from hybridrec.lake import Lake
from hybridrec.pipeline import Step, run_steps
from hybridrec.runinfo import RunContext, new_run
from hybridrec.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

EXTRACTOR_VERSION = "1"  # bump when extraction logic changes in a way that should re-read every text
RESULT_SCHEMA = "doc_id string, content_hash string, status string, reason string, payload string"
EMBEDDING_SCHEMA = "item_id string, content_hash string, embedding array<float>"
USER_SCHEMA = "user_id string, embedding array<float>, items int, queries int"
KEYWORDS_JSON = "array<struct<text:string,weight:double,tag:string,aspect:string>>"
QUERY_JSON = "struct<intent:string,tags:array<string>,keywords:array<string>,confidence:double>"


def extractor_fingerprint(settings: Settings) -> str:
    """What, besides the text, decides an extraction's output: a change re-reads every text."""
    cfg = settings.extraction
    operational = {"chunk_docs": True, "embedder": True, "place_keywords": True, "user_half_life_days": True,
                   "query_weight": True, "http": {"timeout_s", "retries", "backoff_s", "concurrency"}}
    relevant = cfg.model_dump(mode="json", exclude=operational)
    taxonomy = sorted((t.path, t.aspect, t.ko, t.en) for t in load_taxonomy().tags)
    canonical = json.dumps([EXTRACTOR_VERSION, relevant, taxonomy], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- inside Spark's Python workers
@cache
def _worker_models(settings_json: str) -> tuple[Any, Any]:
    """Extractor and query tagger, built once per Python worker process (Spark reuses workers)."""
    from hybridrec.models.extraction import make_backends

    return make_backends(Settings.model_validate_json(settings_json), threads=1)


def _outcome_rows(batch: pd.DataFrame, outcomes: list, dump: Callable[[Any], Any]) -> pd.DataFrame:
    return pd.DataFrame({
        "doc_id": batch["doc_id"], "content_hash": batch["content_hash"],
        "status": ["accepted" if o.accepted else "rejected" for o in outcomes],
        "reason": [o.reason or ("repaired" if o.repaired else None) for o in outcomes],
        "payload": [json.dumps(dump(o.value), ensure_ascii=False) if o.accepted else None for o in outcomes],
    })


def extract_partition(batches: Iterator[pd.DataFrame], settings_json: str) -> Iterator[pd.DataFrame]:
    extractor, _ = _worker_models(settings_json)
    for batch in batches:
        outcomes = extractor.extract(batch["text"].tolist())
        yield _outcome_rows(batch, outcomes, lambda v: [k.model_dump() for k in v.keywords])


def tag_queries_partition(batches: Iterator[pd.DataFrame], settings_json: str) -> Iterator[pd.DataFrame]:
    from hybridrec.models.extraction import AnswerDoc

    _, tagger = _worker_models(settings_json)
    for batch in batches:
        queries = [(text, [AnswerDoc(d["text"], tuple(d["tags"])) for d in (docs if docs is not None else [])])
                   for text, docs in zip(batch["text"], batch["answer_docs"])]
        yield _outcome_rows(batch, tagger.tag_many(queries), lambda v: v.model_dump(mode="json"))


def embed_partition(batches: Iterator[pd.DataFrame], settings_json: str) -> Iterator[pd.DataFrame]:
    from hybridrec.models.text import load_embedder

    embedder = load_embedder(Settings.model_validate_json(settings_json).extraction.embedder, 1)
    for batch in batches:
        vectors = embedder.encode(batch["text"].tolist())
        yield pd.DataFrame({"item_id": batch["doc_id"], "content_hash": batch["content_hash"],
                            "embedding": list(vectors.astype(np.float32))})


def user_vector_group(rows: pd.DataFrame, item_vectors, settings_json: str) -> pd.DataFrame:
    """One user's vector: decayed weights times engaged items' vectors plus interest queries' vectors."""
    from hybridrec.models.text import DIM, load_embedder

    index, matrix = item_vectors.value
    items = rows[rows["kind"] == "item"]
    queries = rows[rows["kind"] == "query"]
    known = items["ref"].map(index)
    items = items[known.notna()]
    vector = np.zeros(DIM, dtype=np.float64)
    if len(items):
        vector += (matrix[known.dropna().astype(int).to_numpy()] * items["weight"].to_numpy()[:, None]).sum(axis=0)
    if len(queries):
        embedder = load_embedder(Settings.model_validate_json(settings_json).extraction.embedder, 1)
        vector += (embedder.encode(queries["ref"].tolist()) * queries["weight"].to_numpy()[:, None]).sum(axis=0)
    norm = float(np.linalg.norm(vector))
    embedding = (vector / norm if norm else vector).astype(np.float32)
    return pd.DataFrame({"user_id": [rows["user_id"].iloc[0]], "embedding": [embedding],
                         "items": [len(items)], "queries": [len(queries)]})


# ---------------------------------------------------------------- on the driver
@dataclass
class Counts:
    """Accepted and rejected documents of one source, with the rejections' reasons."""

    accepted: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, rows: list[dict]) -> None:
        for row in rows:
            if row["status"] == "accepted":
                self.accepted += row["n"]
            else:
                self.rejected += row["n"]
                self.reasons[row["reason"]] = self.reasons.get(row["reason"], 0) + row["n"]


class ExtractJob:
    """One run of the job; each step is one method, each text source one :meth:`_process` call."""

    def __init__(self, settings: Settings, spark, run: RunContext, max_chunks: int | None = None):
        self.settings = settings
        self.spark = spark
        self.run = run
        self.max_chunks = max_chunks
        self.backend = settings.extraction.backend
        self.fingerprint = extractor_fingerprint(settings)
        self.settings_json = settings.model_dump_json()
        self.parallelism = spark.sparkContext.defaultParallelism
        self.stopped_early = False

    def sql(self, statement: str):
        return self.spark.sql(statement)

    def _pending(self, source: str, docs) -> Any:
        """Documents (doc_id, text, ...) whose hash the ledger has not recorded; adds ``content_hash``."""
        from pyspark.sql import functions as F

        hashed = docs.withColumn("content_hash", F.substring(F.sha2(F.concat_ws(
            "\u0000", F.lit(self.fingerprint), F.col("hash_input")), 256), 1, 16)).drop("hash_input")
        done = (self.spark.table(EXTRACTION_STATE.qualified_name).where(F.col("source") == source)
                .select("doc_id", "content_hash"))
        return hashed.join(done, ["doc_id", "content_hash"], "left_anti")

    def _process(self, source: str, pending, infer: Callable, schema: str, write: Callable[[], None],
                 ledger: bool = True) -> Counts:
        """Chunk ``pending``, run ``infer`` in Spark partitions, ``write`` each chunk, then its ledger rows."""
        from pyspark.sql import functions as F

        pending = pending.persist()
        total = pending.count()
        counts = Counts()
        if total == 0:
            log.info("%s: nothing new or changed", source)
            pending.unpersist()
            return counts
        n_chunks = -(-total // self.settings.extraction.chunk_docs)
        chunked = pending.withColumn("chunk", F.pmod(F.xxhash64("doc_id"), F.lit(n_chunks)))
        settings_json = self.settings_json
        log.info("%s: %d documents to process in %d chunk(s) with backend %s", source, total, n_chunks, self.backend)
        with tqdm(total=total, desc=f"extract {source}", unit="doc") as progress:
            for chunk in range(n_chunks):
                if self.max_chunks is not None and chunk >= self.max_chunks:
                    self.stopped_early = True
                    log.warning("%s: stopping after %d chunk(s) as asked; a re-run picks up the rest", source, chunk)
                    break
                started = time.perf_counter()
                docs = chunked.where(F.col("chunk") == chunk).drop("chunk").repartition(self.parallelism)
                docs.createOrReplaceTempView("chunk_docs")
                results = docs.mapInPandas(lambda batches: infer(batches, settings_json), schema).localCheckpoint()
                results.createOrReplaceTempView("chunk_results")
                inferred = time.perf_counter()
                write()
                done = results.count()
                if ledger:
                    self._write_ledger(source)
                    chunk_counts = self.sql("SELECT status, reason, count(*) AS n FROM chunk_results "
                                            "GROUP BY status, reason").collect()
                    counts.add([row.asDict() for row in chunk_counts])
                else:
                    counts.add([{"status": "accepted", "reason": None, "n": done}])
                progress.set_postfix(accepted=counts.accepted, rejected=counts.rejected)
                progress.update(done)
                log.debug("%s chunk %d/%d: inference %.1fs, writes %.1fs", source, chunk + 1, n_chunks,
                          inferred - started, time.perf_counter() - inferred)
        pending.unpersist()
        log.info("%s (%s): %d accepted, %d rejected %s", source, self.backend, counts.accepted, counts.rejected,
                 counts.reasons or "")
        return counts

    def _write_ledger(self, source: str) -> None:
        self.sql(f"""
            MERGE INTO {EXTRACTION_STATE.qualified_name} t
            USING (SELECT '{source}' AS source, doc_id, content_hash, '{self.backend}' AS backend, status, reason,
                          '{self.run.run_id}' AS run_id, current_timestamp() AS processed_at FROM chunk_results) s
            ON t.source = s.source AND t.doc_id = s.doc_id
            WHEN MATCHED THEN UPDATE SET *
            WHEN NOT MATCHED THEN INSERT *""")

    def _replace_rows(self, spec: TableSpec, key: str, select: str) -> None:
        """Delete the chunk's documents' old rows, insert the new ones: a redone chunk never duplicates."""
        self.sql(f"MERGE INTO {spec.qualified_name} t USING (SELECT DISTINCT doc_id FROM chunk_results) s "
                 f"ON t.{key} = s.doc_id WHEN MATCHED THEN DELETE")
        self.sql(f"INSERT INTO {spec.qualified_name} {select}")

    # ---- steps
    def reviews(self) -> Counts:
        docs = self.spark.table(REVIEWS.qualified_name).selectExpr(
            "review_id AS doc_id", "item_id", "language", "text", "text AS hash_input")

        def write() -> None:
            self._replace_rows(REVIEW_KEYWORDS, "review_id", f"""
                SELECT r.doc_id, d.item_id, k.text, k.weight, k.tag, k.aspect, d.language, '{self.backend}',
                       r.content_hash
                FROM chunk_results r JOIN chunk_docs d ON r.doc_id = d.doc_id
                LATERAL VIEW explode(from_json(r.payload, '{KEYWORDS_JSON}')) kws AS k
                WHERE r.status = 'accepted'""")

        return self._process("review", self._pending("review", docs), extract_partition, RESULT_SCHEMA, write)

    def clips(self) -> Counts:
        docs = self.spark.table(CLIPS.qualified_name).selectExpr(
            "item_id AS doc_id", "concat_ws('. ', title, description) AS text",
            "to_json(named_struct('title', title, 'description', description)) AS hash_input")

        def write() -> None:
            self._replace_rows(ITEM_KEYWORDS, "item_id", f"""
                SELECT r.doc_id, 'clip', k.text, k.weight, 1, k.tag, k.aspect
                FROM chunk_results r LATERAL VIEW explode(from_json(r.payload, '{KEYWORDS_JSON}')) kws AS k
                WHERE r.status = 'accepted'""")

        return self._process("clip", self._pending("clip", docs), extract_partition, RESULT_SCHEMA, write)

    def queries(self) -> Counts:
        limit = self.settings.extraction.answer_docs
        self.sql(f"""
            CREATE OR REPLACE TEMP VIEW answer_docs AS
            SELECT item_id, named_struct('text', name, 'tags', array(category_path)) AS doc FROM {PLACES.qualified_name}
            UNION ALL
            SELECT item_id, named_struct('text', concat_ws('. ', title, description), 'tags', array(topic_path)) AS doc
            FROM {CLIPS.qualified_name}""")
        docs = self.sql(f"""
            SELECT c.query_id AS doc_id, first(c.user_id) AS user_id, first(c.text) AS text,
                   slice(array_sort(collect_list(
                       CASE WHEN a.doc IS NOT NULL THEN named_struct('pos', c.pos, 'doc', a.doc) END)), 1, {limit}).doc
                       AS answer_docs
            FROM (SELECT q.query_id, q.user_id, q.text, clicked.pos, clicked.id FROM {SEARCH_QUERIES.qualified_name} q
                  LATERAL VIEW OUTER posexplode(q.clicked_item_ids) clicked AS pos, id) c
            LEFT JOIN answer_docs a ON a.item_id = c.id
            GROUP BY c.query_id""").selectExpr("*", "to_json(named_struct('q', text, 'a', answer_docs)) AS hash_input")

        def write() -> None:
            self.sql(f"""
                MERGE INTO {QUERY_TAGS.qualified_name} t
                USING (SELECT r.doc_id AS query_id, d.user_id, r.status, from_json(r.payload, '{QUERY_JSON}') AS q,
                              r.content_hash
                       FROM chunk_results r JOIN chunk_docs d ON r.doc_id = d.doc_id) s
                ON t.query_id = s.query_id
                WHEN MATCHED AND s.status = 'rejected' THEN DELETE
                WHEN MATCHED THEN UPDATE SET t.intent = s.q.intent, t.tags = s.q.tags, t.keywords = s.q.keywords,
                    t.confidence = s.q.confidence, t.backend = '{self.backend}', t.content_hash = s.content_hash
                WHEN NOT MATCHED AND s.status = 'accepted' THEN INSERT
                    (query_id, user_id, intent, tags, keywords, confidence, backend, content_hash)
                    VALUES (s.query_id, s.user_id, s.q.intent, s.q.tags, s.q.keywords, s.q.confidence,
                            '{self.backend}', s.content_hash)""")

        return self._process("query", self._pending("query", docs), tag_queries_partition, RESULT_SCHEMA, write)

    def places(self) -> int:
        """Every place's keywords, aggregated over its reviews: one atomic overwrite of the place partition."""
        self.spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
        self.sql(f"""
            INSERT OVERWRITE {ITEM_KEYWORDS.qualified_name}
            SELECT item_id, 'place', keyword, weight / max(weight) OVER (PARTITION BY item_id), mentions, tag, aspect
            FROM (SELECT item_id, keyword, sum(weight) AS weight, CAST(count(DISTINCT review_id) AS INT) AS mentions,
                         max(tag) AS tag, max(aspect) AS aspect
                  FROM {REVIEW_KEYWORDS.qualified_name} GROUP BY item_id, keyword)""")
        return self.sql(f"SELECT count(*) AS n FROM {ITEM_KEYWORDS.qualified_name} WHERE surface = 'place'").first().n

    def item_embeddings(self) -> Counts:
        """Places from name, category and top keywords; clips from title, description and topic."""
        taxonomy = load_taxonomy()
        labels = [(t.path, ", ".join((*t.en, *t.ko))) for t in taxonomy.tags]
        self.spark.createDataFrame(labels, "path string, label string").createOrReplaceTempView("tag_labels")
        top = self.settings.extraction.place_keywords
        model = self.settings.extraction.embedder
        docs = self.sql(f"""
            WITH ranked AS (
                SELECT item_id, keyword, row_number() OVER (PARTITION BY item_id ORDER BY weight DESC, keyword) AS rank
                FROM {ITEM_KEYWORDS.qualified_name} WHERE surface = 'place'),
            place_text AS (
                SELECT p.item_id, concat_ws('. ', p.name, l.label,
                       concat_ws(', ', transform(
                           array_sort(collect_list(named_struct('rank', k.rank, 'kw', k.keyword))), x -> x.kw))) AS text
                FROM {PLACES.qualified_name} p LEFT JOIN tag_labels l ON l.path = p.category_path
                LEFT JOIN ranked k ON k.item_id = p.item_id AND k.rank <= {top}
                GROUP BY p.item_id, p.name, l.label)
            SELECT item_id AS doc_id, 'place' AS surface, text FROM place_text
            UNION ALL
            SELECT c.item_id, 'clip', concat_ws('. ', c.title, c.description, l.label)
            FROM {CLIPS.qualified_name} c LEFT JOIN tag_labels l ON l.path = c.topic_path""")
        docs = docs.selectExpr("*", f"substring(sha2(concat_ws('|', '{model}', text), 256), 1, 16) AS content_hash")
        existing = self.spark.table(ITEM_EMBEDDINGS.qualified_name).selectExpr("item_id AS doc_id", "content_hash")
        pending = docs.join(existing, ["doc_id", "content_hash"], "left_anti")

        def write() -> None:
            self.sql(f"""
                MERGE INTO {ITEM_EMBEDDINGS.qualified_name} t
                USING (SELECT r.item_id, d.surface, r.embedding, '{model}' AS model, r.content_hash
                       FROM chunk_results r JOIN chunk_docs d ON r.item_id = d.doc_id) s
                ON t.item_id = s.item_id
                WHEN MATCHED THEN UPDATE SET *
                WHEN NOT MATCHED THEN INSERT *""")

        return self._process("item-embedding", pending, embed_partition, EMBEDDING_SCHEMA, write, ledger=False)

    def user_embeddings(self) -> int:
        """Engaged items' and interest queries' vectors, weighted by event type and halved every half-life."""
        cfg = self.settings.extraction
        weights = {k: v for k, v in self.settings.signals.event_weights.items() if v > 0}
        as_of = self.sql(f"SELECT CAST(max(ts) AS STRING) AS t FROM {EVENTS.qualified_name}").first().t
        if as_of is None:
            log.info("user embeddings: no events yet")
            return 0
        half_life_s = cfg.user_half_life_days * 86_400

        def decay(ts: str) -> str:
            return f"pow(0.5, (unix_timestamp(TIMESTAMP '{as_of}') - unix_timestamp({ts})) / {half_life_s})"

        rows = self.sql(f"""
            SELECT user_id, 'item' AS kind, item_id AS ref,
                   sum((CASE event_type {" ".join(f"WHEN '{k}' THEN {v}" for k, v in weights.items())} END)
                       * {decay("ts")}) AS weight
            FROM {EVENTS.qualified_name}
            WHERE item_id IS NOT NULL AND event_type IN ({", ".join(f"'{k}'" for k in weights)})
            GROUP BY user_id, item_id
            UNION ALL
            SELECT q.user_id, 'query', q.text, {cfg.query_weight} * {decay("q.ts")}
            FROM {SEARCH_QUERIES.qualified_name} q JOIN {QUERY_TAGS.qualified_name} t ON t.query_id = q.query_id
            WHERE t.intent = 'interest'""")
        vectors = self.spark.table(ITEM_EMBEDDINGS.qualified_name).select("item_id", "embedding").toPandas()
        index = {item_id: i for i, item_id in enumerate(vectors["item_id"])}
        matrix = (np.stack(vectors["embedding"].to_numpy()).astype(np.float32) if len(vectors)
                  else np.zeros((0, 1), dtype=np.float32))
        broadcast = self.spark.sparkContext.broadcast((index, matrix))
        settings_json = self.settings_json
        users = rows.groupBy("user_id").applyInPandas(
            lambda group: user_vector_group(group, broadcast, settings_json), USER_SCHEMA)
        users.selectExpr("user_id", "embedding", "items", "queries", f"'{cfg.embedder}' AS model",
                         f"TIMESTAMP '{as_of}' AS as_of").createOrReplaceTempView("user_vectors")
        self.sql(f"INSERT OVERWRITE {USER_EMBEDDINGS.qualified_name} SELECT * FROM user_vectors")
        broadcast.unpersist()
        return self.spark.table(USER_EMBEDDINGS.qualified_name).count()


def extract_job(settings: Settings, max_chunks: int | None = None) -> dict[str, Any]:
    """The whole job as named steps; returns per-source accepted/rejected counts and row counts."""
    from hybridrec.spark import isolated_session

    lake = Lake(settings)
    for spec in CONTENT_TABLES:
        lake.table(spec)  # created with the contract's schema and partitioning if missing
    run = new_run(settings, "extract")
    # Catalog connections of its own: earlier work in the process (the generator, the sink) may have
    # left stale ones behind (hybridrec.spark explains).
    spark = isolated_session(settings, app_name="hybridrec-extract")
    # Required columns are filled from expressions Spark cannot prove non-null (JSON fields); a null still fails.
    spark.conf.set("spark.sql.iceberg.check-nullability", "false")
    job = ExtractJob(settings, spark, run, max_chunks)

    def counted(name: str, fn: Callable[[], Counts]) -> Step:
        def step(_: dict) -> dict:
            counts = fn()
            return {name: {"backend": job.backend, "accepted": counts.accepted, "rejected": counts.rejected,
                           "rejected_reasons": counts.reasons}}
        return Step(name, step)

    steps = [
        counted("reviews", job.reviews),
        counted("clips", job.clips),
        counted("queries", job.queries),
        Step("places", lambda _: {"place_keywords": job.places()}, "aggregate review keywords per place"),
        counted("item-embeddings", job.item_embeddings),
        Step("user-embeddings", lambda _: {"users": job.user_embeddings()}, "engaged items + interest queries"),
    ]
    if max_chunks is not None:
        steps = steps[:3]  # a bounded run only advances the text sources
    context = run_steps("extract", steps, {"run_id": run.run_id})
    context["stopped_early"] = job.stopped_early
    return context
