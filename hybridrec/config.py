"""One config object for every part of hybridrec.

Loaded from a YAML file (``configs/default.yaml`` unless ``HYBRIDREC_CONFIG`` names another),
then overridden by environment variables ``HYBRIDREC__SECTION__KEY=value`` (double underscores
separate nesting levels, values are parsed as YAML scalars), then validated once. Unknown keys
are errors, so a typo fails at start-up instead of silently falling back to a default.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "configs" / "default.yaml"
ENV_PREFIX = "HYBRIDREC__"

MODEL_CONFIG_SECTIONS = ("signals", "extraction", "distill", "candidates", "retrain")
"""Sections that shape what a retrain run learns and publishes: interaction weights (signals), the
content features and tags (extraction), the topic classifier behind clips' predicted topics (distill),
the candidate pool the ranker learns on and is served (candidates) and the models and features
themselves (retrain). Serving compares their hash with the
published run's (:meth:`Settings.model_config_hash`). Serving's own section is left out: it shapes the
feed at request time (limits, rules, timeouts) and may differ freely from the run's."""
OPERATIONAL_KEYS = (
    "extraction.chunk_docs", "extraction.answer_cache", "extraction.http.endpoint", "extraction.http.api_key_env",
    "extraction.http.timeout_s", "extraction.http.retries", "extraction.http.backoff_s",
    "extraction.http.concurrency", "extraction.llamacpp.n_threads", "extraction.llamacpp.n_batch",
    "extraction.generative.batch_size", "retrain.models_dir", "retrain.keep_index_versions", "retrain.batch_users",
)
"""Keys of those sections that change how a job runs (where, how fast, how it recovers) but not what it learns."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    version: str = "3.9.1"
    scala: str = "2.13"
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    heap_mb: int = Field(512, ge=128)
    nodes: int = Field(1, ge=1)  # KRaft processes, each broker and controller; node i listens on port + i
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)  # of every topic, internal ones included
    min_insync_replicas: int = Field(1, ge=1)  # replicas an acks=all write must reach
    retention_hours: int = Field(168, ge=1)
    events_topic: str = "hybridrec.events"
    queries_topic: str = "hybridrec.search-queries"
    dead_letter_topic: str = "hybridrec.dead-letter"

    @property
    def node_ports(self) -> list[tuple[int, int]]:
        """(broker, controller) port of each node."""
        return [(self.port + i, self.controller_port + i) for i in range(self.nodes)]

    @property
    def bootstrap(self) -> str:
        """Every node, so a client still finds the cluster while one of them is down."""
        return ",".join(f"{self.host}:{port}" for port, _ in self.node_ports)

    @model_validator(mode="after")
    def _replication_fits(self) -> "KafkaSettings":
        if not self.min_insync_replicas <= self.replication_factor <= self.nodes:
            raise ValueError(f"kafka needs min_insync_replicas <= replication_factor <= nodes, got "
                             f"{self.min_insync_replicas}, {self.replication_factor}, {self.nodes}")
        return self


class OpenSearchSettings(_Section):
    version: str = "2.19.1"
    knn_plugin_version: str = "2.19.1.0"
    host: str = "127.0.0.1"
    port: int = Field(9200, ge=1, le=65535)
    transport_port: int = Field(9300, ge=1, le=65535)
    heap_mb: int = Field(1024, ge=256)
    nodes: int = Field(1, ge=1)  # one cluster; node i listens on port + i and transport_port + i
    index_prefix: str = "hybridrec"
    shards: int = Field(1, ge=1)
    replicas: int = Field(0, ge=0)
    # The one client policy (hybridrec.search.ClientPolicy) of jobs and streams; a feed request waits
    # serving.search_timeout_s instead and is never retried
    timeout_s: float = Field(10.0, gt=0)
    retries: int = Field(2, ge=0)  # on a connection error, a timeout or 502/503/504 ...
    retry_backoff_s: float = Field(0.5, ge=0)  # ... after this long, doubling each time

    @property
    def node_ports(self) -> list[tuple[int, int]]:
        """(HTTP, transport) port of each node."""
        return [(self.port + i, self.transport_port + i) for i in range(self.nodes)]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def urls(self) -> list[str]:
        """Every node's HTTP address: what clients spread their requests over (and fail over between)."""
        return [f"http://{self.host}:{port}" for port, _ in self.node_ports]

    @model_validator(mode="after")
    def _replicas_fit(self) -> "OpenSearchSettings":
        if self.replicas >= self.nodes:
            raise ValueError(f"opensearch.replicas ({self.replicas}) needs more nodes than {self.nodes}: "
                             "a replica never shares a node with its primary")
        return self


class SparkSettings(_Section):
    master: str = "local[2]"
    driver_memory: str = "3g"
    shuffle_partitions: int = Field(8, ge=1)
    iceberg_version: str = "1.10.1"
    spark_compat: str = "4.0"
    scala: str = "2.13"
    sqlite_jdbc_version: str = "3.50.3.0"
    postgres_jdbc_version: str = "42.7.7"
    extra_conf: dict[str, str] = Field(default_factory=dict)


class SparkStandaloneSettings(_Section):
    """The standalone master and workers `infra up` starts in the cluster topology (spark.master names the master)."""

    workers: int = Field(2, ge=1)
    master_webui_port: int = Field(18080, ge=1, le=65535)
    worker_port: int = Field(17078, ge=1, le=65535)  # worker i: worker_port + i, its web UI worker_webui_port + i
    worker_webui_port: int = Field(18081, ge=1, le=65535)
    worker_cores: int = Field(1, ge=1)
    worker_memory: str = "1536m"  # what executors on one worker may take in all
    daemon_heap_mb: int = Field(256, ge=64)  # heap of the master and worker daemons themselves


class PostgresSettings(_Section):
    """The PostgreSQL server `infra up` runs for the catalog in the cluster topology (lake.uri names it)."""

    version: int = Field(15, ge=10)  # Debian's postgresql-<version>: the machine's, else unpacked from the package
    shared_buffers_mb: int = Field(128, ge=16)
    max_connections: int = Field(100, ge=10)


class InfraSettings(_Section):
    """What `hybridrec infra` runs: one node per engine, or clusters of them on loopback.

    ``cluster`` holds settings of the other sections (same keys) laid over them when ``topology`` is
    ``cluster``; environment overrides still win. Clients read only those ordinary keys, so no code
    outside the infra manager and this config knows which topology it runs on.
    """

    topology: Literal["single", "cluster"] = "single"
    cluster: dict[str, dict[str, Any]] = Field(default_factory=lambda: {
        "kafka": {"nodes": 3, "port": 19092, "controller_port": 19192, "heap_mb": 384, "partitions": 12,
                  "replication_factor": 3, "min_insync_replicas": 2},
        "opensearch": {"nodes": 3, "port": 19200, "transport_port": 19300, "heap_mb": 512, "replicas": 1},
        "spark": {"master": "spark://127.0.0.1:17077", "driver_memory": "1g",
                  "extra_conf": {"spark.executor.memory": "1g"}},
        "lake": {"uri": "postgresql+psycopg2://hybridrec@127.0.0.1:15432/iceberg"},
    })
    spark_standalone: SparkStandaloneSettings = SparkStandaloneSettings()
    postgres: PostgresSettings = PostgresSettings()


class LakeSettings(_Section):
    """The Iceberg catalog shared by pyiceberg and Spark.

    ``kind: sql`` with a SQLAlchemy URI (``sqlite:///...`` embedded, ``postgresql+psycopg2://...``
    in production) or ``kind: rest`` with the REST catalog's URL. ``warehouse`` is a folder or an
    object-store URI (``s3://bucket/prefix``); ``properties`` pass through to both engines (e.g.
    ``s3.endpoint``). Empty ``uri``/``warehouse`` mean the embedded defaults under ``home``.
    """

    catalog_name: str = "hybridrec"
    kind: Literal["sql", "rest"] = "sql"
    uri: str = ""
    warehouse: str = ""
    properties: dict[str, str] = Field(default_factory=dict)


class SyntheticSettings(_Section):
    seed: int = 7
    n_users: int = Field(20_000, ge=10)
    n_places: int = Field(5_000, ge=10)
    n_clips: int = Field(20_000, ge=10)
    n_events: int = Field(1_000_000, ge=100)
    n_days: int = Field(28, ge=2)
    cold_user_share: float = Field(0.05, ge=0, le=0.5)
    reviews_per_place: float = Field(6.0, gt=0)
    queries_per_user: float = Field(4.0, gt=0)
    start_date: str = "2026-10-01"
    taste_weight: float = Field(0.5, ge=0, le=1)  # share of a place's appeal that depends on the user's tastes


class SignalSettings(_Section):
    """What one event says about a user's interest in its item, signed. One table for every reader:
    the retrain's interaction confidence (ALS, co-visitation), the long-term content profile of the
    extraction job and the stream's real-time context."""

    event_weights: dict[str, float] = Field(default_factory=lambda: {
        "view": 0.0, "click": 1.0, "dwell": 1.0, "like": 3.0, "save": 4.0, "share": 4.0, "visit": 5.0,
        "skip": -1.0, "search": 0.0})
    dwell_full_ms: int = Field(20_000, ge=1)  # the retrain counts a dwell fully from this long, in proportion below

    @field_validator("event_weights")
    @classmethod
    def _known_event_types(cls, weights: dict[str, float]) -> dict[str, float]:
        return _known_event_types(weights)


def _known_event_types(by_type: dict[str, Any]) -> dict[str, Any]:
    from hybridrec.contract import EVENT_TYPES  # the contract's own imports are heavier than config's

    unknown = sorted(set(by_type) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {list(EVENT_TYPES)}")
    return by_type


class StreamingSettings(_Section):
    """The real-time half (``hybridrec.streaming``): lake sink, user-context updater, replay, maintenance."""

    sink_group: str = "hybridrec-lake-sink"
    context_group: str = "hybridrec-user-context"
    session_timeout_ms: int = Field(10_000, ge=6_000)
    sink_batch_messages: int = Field(20_000, ge=1)
    sink_flush_interval_ms: int = Field(10_000, ge=10)
    sink_catalog_outage_s: float = Field(120.0, ge=0)
    context_poll_ms: int = Field(50, ge=1)
    context_batch_messages: int = Field(5_000, ge=1)
    context_commit_interval_ms: int = Field(1_000, ge=10)
    context_cache_users: int = Field(200_000, ge=0)
    max_future_skew_s: int = Field(300, ge=0)
    known_items_refresh_s: int = Field(300, ge=1)
    context_index: str = "user-context"
    engaged_items: int = Field(50, ge=1)
    skipped_items: int = Field(50, ge=1)
    search_tags: int = Field(20, ge=1)
    search_keywords: int = Field(10, ge=0)  # words of recent interest searches kept per user
    session_gap_s: int = Field(1800, ge=1)
    interest_half_life_s: float = Field(3600.0, gt=0)
    search_tags_half_life_s: float = Field(86_400.0, gt=0)
    query_tagger: Literal["student", "rules", "extraction"] = "student"
    item_vectors_alias: str = "items-{surface}"
    item_vector_field: str = "content_vector"
    replay_rate: float = Field(1000.0, gt=0)
    compaction_target_file_mb: int = Field(128, ge=1)
    compaction_min_input_files: int = Field(5, ge=2)
    snapshot_max_age_h: float = Field(24.0, gt=0)
    snapshots_retained: int = Field(20, ge=1)
    orphan_file_age_h: float = Field(24.0, ge=24)  # Iceberg refuses less: in-flight writes look orphaned


# ---- extraction (keywords, tags, query intent, content embeddings): hybridrec.models.extraction
class ExtractionHttpSettings(_Section):
    """An OpenAI-compatible chat-completions endpoint (vLLM, a hosted LLM) for the ``http`` backend."""

    endpoint: str = "http://127.0.0.1:8000/v1"
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    api_key_env: str = "HYBRIDREC_LLM_API_KEY"  # the key is read from this variable, never from a file
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    concurrency: int = Field(4, ge=1)  # documents in flight at once per batch
    max_tokens: int = Field(400, ge=16)
    # How the answer's JSON schema is sent: "json_schema" (OpenAI, vLLM) or "json_object" + schema (llama.cpp's server)
    schema_style: Literal["json_schema", "json_object"] = "json_schema"


class ExtractionGenerativeSettings(_Section):
    """A local instruction-tuned model loaded by ``transformers`` from files only (never a hub)."""

    model_path: str = ""  # a folder with config + safetensors, or the folder holding ``gguf_file``
    gguf_file: str = ""
    max_new_tokens: int = Field(256, ge=16)
    batch_size: int = Field(4, ge=1)


class ExtractionLlamaCppSettings(_Section):
    """A GGUF model run in-process by llama.cpp (``llama-cpp-python``), answers constrained to a JSON schema."""

    model: str = "qwen2.5-coder-1.5b-instruct-q4_k_m"  # a name of models.extraction.gguf.CATALOGUE ...
    model_path: str = ""  # ... or a GGUF file of your own (a bigger model on a bigger machine); wins when set
    n_ctx: int = Field(4096, ge=512)  # system prompt + one text + its answer
    n_threads: int = Field(0, ge=0)  # 0: the process's own thread budget (one per Spark task, else the cores)
    n_batch: int = Field(512, ge=8)  # prompt tokens evaluated per step
    max_tokens: int = Field(320, ge=16)  # generated tokens per answer


class ExtractionSettings(_Section):
    backend: Literal["offline", "student", "llamacpp", "http", "transformers"] = "offline"
    embedder: Literal["use-m3", "use-m3-pieces"] = "use-m3"  # content embeddings of items, users, queries
    ranking_embedder: Literal["use-m3", "use-m3-pieces"] = "use-m3-pieces"  # keyword ranking (MMR)
    max_keywords: int = Field(8, ge=1, le=32)
    max_keyword_chars: int = Field(40, ge=4)
    max_input_chars: int = Field(2000, ge=100)
    mmr_diversity: float = Field(0.5, ge=0, le=1)
    tag_similarity: float = Field(0.85, gt=0, le=1)  # cosine to reach a topic/dish tag not spelled verbatim
    tag_grounding: float = Field(0.45, gt=0, le=1)  # generative backends: cosine of a keyword to a tag's forms to keep it
    answer_cache: str = ""  # generative backends: SQLite file of answers by question (models.extraction.answer_cache)
    combine_rule: Literal["offline_first", "vote"] = "offline_first"  # models.extraction.combined
    combine_offline: bool = True  # generative backends: vote with the offline reader (models.extraction.combined)
    # Offline intent by meaning: a query is utility (navigational) when its similarity to the lookup (site)
    # descriptions beats the other kinds by this margin; chosen on the real-text validation split
    intent_margin_utility: float = Field(0.08, ge=-1, le=1)
    intent_margin_navigational: float = Field(0.09, ge=-1, le=1)
    answer_docs: int = Field(5, ge=0)  # answering documents a query tagger reads besides the query
    place_keywords: int = Field(12, ge=1)  # aggregated keywords per place that enter its embedding
    user_half_life_days: float = Field(7.0, gt=0)
    query_weight: float = Field(2.0, ge=0)  # an interest query against one engagement, in user vectors
    chunk_docs: int = Field(20_000, ge=1)  # documents per committed chunk: what a crash can lose
    http: ExtractionHttpSettings = ExtractionHttpSettings()
    generative: ExtractionGenerativeSettings = ExtractionGenerativeSettings()
    llamacpp: ExtractionLlamaCppSettings = ExtractionLlamaCppSettings()


class DistillSettings(_Section):
    """Cold start by distillation (``hybridrec distill``): teacher labels → query student + topic classifier."""

    pool_size: int = Field(20_000, ge=0)  # generated queries the teacher labels besides the search log's
    max_log_queries: int = Field(50_000, ge=1)  # most frequent distinct query texts taken from the search log
    max_clips: int = Field(50_000, ge=0)  # clip texts the topic classifier learns from
    min_teacher_confidence: float = Field(0.3, ge=0, le=1)
    min_answer_agreement: float = Field(0.6, ge=0, le=1)  # share of a text's tagged searches that must agree
    min_feature_count: int = Field(2, ge=1)
    l2: float = Field(1e-6, ge=0)
    tag_threshold: float = Field(0.4, gt=0, lt=1)
    max_tags: int = Field(3, ge=1)
    topic_min_confidence: float = Field(0.6, gt=0, le=1)  # the classifier stops at the broader topic below this
    holdout_share: float = Field(0.1, ge=0, lt=1)  # teacher-labelled texts kept out of training, for agreement
    llm_teacher: Literal["", "llamacpp", "http", "transformers"] = ""  # "": the offline reader teaches alone
    llm_budget_texts: int = Field(300, ge=0)  # new texts the LLM teacher labels per run
    llm_budget_seconds: float = Field(1800, ge=0)  # and the model time it may spend on them
    review_pool_per_source: int = Field(1000, ge=1, le=1500)  # real reviews per language (the committed pool's)
    review_l2: float = Field(1e-4, ge=0)
    llm_review_budget_texts: int = Field(20, ge=0)  # new reviews the LLM teacher reads per run (kept in a ledger)
    llm_review_budget_seconds: float = Field(600, ge=0)  # and the model time it may spend on them
    seed: int = 7
    student_run: str = ""  # "" = the newest succeeded distill run; else a run id under retrain.models_dir


class ALSSettings(_Section):
    factors: int = Field(64, ge=2)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(10.0, gt=0)
    iterations: int = Field(15, ge=1)


class GraphFilterSettings(_Section):
    """BSPM graph filter (GF-CF blurring + sharpening), the second CF model: training-free, strong on sparse data."""

    ideal_rank: int = Field(128, ge=1)
    ideal_weight: float = Field(0.3, ge=0)
    sharpen_time: float = Field(1.0, ge=0)
    sharpen_steps: int = Field(1, ge=1)  # RK4 steps over sharpen_time


class SelectionSettings(_Section):
    """The retrain's per-surface hyper-parameter search of the CF families and of the ranker
    (:mod:`hybridrec.models.selection`)."""

    enabled: bool = True
    trials: int = Field(6, ge=1)  # per family and surface
    budget_s: float = Field(90.0, gt=0)  # per surface, shared by the families
    validation_share: float = Field(0.1, gt=0, lt=1)
    max_users: int = Field(2_000, ge=10)
    max_graph_rank: int = Field(256, ge=8)  # graph filters' ideal rank (memory: n_items x rank float32)
    max_graph_order: int = Field(10, ge=2)  # ChebyCF's polynomial order (time: graph products per scored batch)
    ranker_trials: int = Field(6, ge=0)  # the ranker's LightGBM settings, per surface; 0: the configured ones
    ranker_budget_s: float = Field(60.0, gt=0)  # per surface


class RankerSettings(_Section):
    num_leaves: int = Field(7, ge=2)
    learning_rate: float = Field(0.05, gt=0)
    n_estimators: int = Field(300, ge=1)
    min_child_samples: int = Field(50, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    max_train_users: int = Field(20_000, ge=10)
    validation_share: float = Field(0.1, gt=0, lt=1)  # of the training users, for early stopping


class CandidateSettings(_Section):
    """The candidate pool, the same for the retrain's training and evaluation rows and for every feed
    request (:mod:`hybridrec.features.candidates`): sources' depth, the pool's size, the sources' parameters."""

    per_source: int = Field(50, ge=1)  # items each source proposes per user (its list, ranks 1..per_source)
    pool_size: int = Field(150, ge=1)  # the union cut by reciprocal-rank fusion: the rows the ranker scores
    geo_radius_km: float = Field(5.0, gt=0)  # places: geo candidates around the user (a request may set its own)
    covisit_neighbours: int = Field(20, ge=1)  # co-visited items kept (and published) per item
    covisit_seed_items: int = Field(50, ge=1)  # a user's strongest engaged items that co-visitation expands
    interest_tags: int = Field(8, ge=1)  # strongest interest tags of the keyword source (and search words kept)
    # Serving finds the als and content lists by the HNSW graph (approximate: a list may miss an item of
    # batch's exact top); true: by scoring every unseen item (batch's lists exactly, slower per request).
    exact_vectors: bool = False


class RetrainSettings(_Section):
    """The nightly pipeline: interaction decay, models, candidate depth, evaluation."""

    half_life_days: float = Field(14.0, gt=0)
    label_days: int = Field(3, ge=1)
    # Relevance of a label-day event: what the ranker learns to put on top (views and skips are not engagement)
    label_gains: dict[str, int] = Field(default_factory=lambda: {
        "click": 1, "dwell": 1, "like": 2, "save": 2, "share": 2, "visit": 2})
    trending_days: float = Field(3.0, gt=0)  # an item's trending feature: share of its engagement in these last days
    eval_k: int = Field(20, ge=1)
    batch_users: int = Field(2_000, ge=1)
    models_dir: str = "models"
    keep_index_versions: int = Field(3, ge=2)
    seed: int = 0  # ALS and graph-filter initialisation, the ranker's sample of training users
    heavy_user_items: int = Field(10, ge=1)  # user segments (features/segments.py), offline and in feeds: "heavy" from this many engaged items
    content_signals: Literal["extracted", "truth_tags", "none"] = "extracted"  # ablations: see default.yaml
    als: ALSSettings = ALSSettings()
    graph_filter: GraphFilterSettings = GraphFilterSettings()
    ranker: RankerSettings = RankerSettings()
    selection: SelectionSettings = SelectionSettings()

    @field_validator("label_gains")
    @classmethod
    def _known_label_events(cls, gains: dict[str, int]) -> dict[str, int]:
        return _known_event_types(gains)


class GFCFSettings(_Section):
    """GF-CF (models.collaborative.GFCFModel): BSPM's blurring without sharpening."""

    ideal_rank: int = Field(256, ge=1)
    ideal_weight: float = Field(0.3, ge=0)


class ChebyCFSettings(_Section):
    """ChebyCF (models.collaborative.ChebyCFModel): Chebyshev-interpolated low-pass + ideal low-pass + degree normalisation."""

    order: int = Field(8, ge=1)  # Chebyshev terms: applications of the item graph per scored batch
    flatness: float = Field(1.5, gt=0)  # shape of the target response (1: linear, GF-CF's P)
    ideal_rank: int = Field(512, ge=0)
    ideal_weight: float = Field(0.2, ge=0)
    degree_power: float = 0.4  # item degree^-p before the filter, ^p after


class FusionSettings(_Section):
    """Score fusion (models.collaborative.FusionModel): weight per member family, each member with its own section's settings."""

    weights: dict[str, float] = Field(default_factory=lambda: {"chebycf": 1.0, "als": 0.2})


class GowallaSettings(_Section):
    """The Gowalla benchmark (LightGCN split): where its files are, the protocol and each model's settings."""

    path: str = "../shared/data/gowalla"  # train.txt and test.txt; relative to the project root
    k: int = Field(20, ge=1)  # Recall@k / NDCG@k, as the published figures
    validation_share: float = Field(0.1, gt=0, lt=1)  # of each user's training items, held out for tuning
    validation_seed: int = 0
    bspm: GraphFilterSettings = Field(default_factory=lambda: GraphFilterSettings(
        ideal_rank=448, ideal_weight=0.15, sharpen_time=2.5, sharpen_steps=1))
    gfcf: GFCFSettings = GFCFSettings()
    chebycf: ChebyCFSettings = ChebyCFSettings()
    fusion: FusionSettings = FusionSettings()
    als: ALSSettings = Field(default_factory=lambda: ALSSettings(
        factors=512, regularization=30.0, alpha=40.0, iterations=15))

    @property
    def data_dir(self) -> Path:
        path = Path(self.path)
        return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()

    def model_params(self, name: str) -> dict[str, Any]:
        """Keyword arguments of the models.collaborative model ``name`` (bspm, gfcf, chebycf, fusion, als)."""
        if name == "fusion":
            weights = self.fusion.weights
            return {"weights": weights, "members": {member: self.model_params(member) for member in weights}}
        return getattr(self, name).model_dump()


class ExperimentVariant(_Section):
    """One arm of the feed experiment: which ranker scores it and which rule set shapes it."""

    name: str
    weight: float = Field(1.0, gt=0)
    ranker_run: str = ""  # "" = the run the served index was published by; else a run id under models_dir
    use_ranker: bool = True  # False: order by reciprocal-rank fusion of the sources (no model)
    mmr_lambda: float | None = Field(None, ge=0, le=1)  # None = serving.mmr_lambda
    topic_consistency: bool = True


class ServingSettings(_Section):
    """The feed API (``hybridrec serve``): limits, candidate depth, rules, experiments, degraded mode."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # Processes; 0 = one per core plus one (see ``processes``): a feed waits on OpenSearch for part of its
    # time and the extra process runs meanwhile. p99 at 100 req/s on 2 cores: 2 workers 48 ms, 3 workers 25-29, 4 38.
    workers: int = Field(0, ge=0)
    api_keys: list[str] = Field(default_factory=list)  # write endpoints need one; empty: writes are refused
    read_requires_key: bool = True  # private by default: feeds reveal a user's tastes
    # HS256 secret of the user claims the gateway signs (Authorization: Bearer <JWT>, sub = user id);
    # empty: no claim is accepted and every feed's reasons are generic. Never printed (SecretStr).
    user_token_secret: SecretStr = SecretStr("")
    user_token_audience: str = ""  # required "aud" of user claims; "": not checked
    rate_limit_per_s: float = Field(1000.0, gt=0)  # per API key (or per client address without one)
    rate_limit_burst: int = Field(2000, ge=1)
    # Buckets in the table every worker shares (16 bytes each); keys hashing to one slot share a budget.
    rate_limit_slots: int = Field(65536, ge=1)
    default_limit: int = Field(20, ge=1)
    max_limit: int = Field(100, ge=1)
    max_events_per_request: int = Field(1000, ge=1)
    max_radius_km: float = Field(100.0, gt=0)
    min_topic_share: float = Field(0.1, ge=0, le=1)  # affinity for a topic to count as an interest
    # Surfaces whose feeds hold topic consistency. Clips: a soccer fan gets no baseball filler. Not places
    # by default: a map of one cuisine is no better for it (a jjajang regular still drinks coffee), and
    # blocking every sibling cuisine left too few places to fill the feed under the topic cap.
    topic_consistency_surfaces: list[Literal["place", "clip"]] = Field(default_factory=lambda: ["clip"])
    max_per_creator: int = Field(2, ge=1)
    max_topic_share: float = Field(0.5, gt=0, le=1)  # of the feed, per topic path
    mmr_lambda: float = Field(0.8, ge=0, le=1)  # 1: relevance only; 0: diversity only
    open_now_only: bool = False  # places: drop those closed at request time (local clock below)
    timezone: str = "Asia/Seoul"
    regions: list[str] = Field(default_factory=list)  # places: only these regions ([]: all)
    experiment_name: str = "feed-ranker"
    experiments: list[ExperimentVariant] = Field(default_factory=lambda: [
        ExperimentVariant(name="control", weight=0.9),
        ExperimentVariant(name="fusion-holdout", weight=0.1, use_ranker=False)])
    model_check_interval_s: float = Field(30.0, gt=0)  # how often the served alias is checked for a new run
    search_timeout_s: float = Field(2.0, gt=0)
    # A worker answers only once its first feeds would be fast (item cache read, every source queried
    # once); it waits this long for a slow OpenSearch, then serves anyway and /readyz says not warm.
    warmup_timeout_s: float = Field(120.0, ge=0)
    kafka_timeout_s: float = Field(5.0, gt=0)
    # Feed pipelines at once per worker. A pipeline is mostly Python: two in one process take turns on
    # its GIL and both finish late (p99 at 100 req/s, 2 workers: 60 ms with 2, 48 ms with 1).
    max_concurrent_feeds: int = Field(1, ge=1)
    max_queue_ms: float = Field(100.0, gt=0)  # a feed not started this long after arriving answers degraded

    @property
    def processes(self) -> int:
        """``workers`` on this machine, resolved when used so the declared 0 is what the config hash sees."""
        return self.workers or (os.cpu_count() or 1) + 1

    @field_validator("user_token_secret")
    @classmethod
    def _secret_long_enough(cls, secret: SecretStr) -> SecretStr:
        if 0 < len(secret.get_secret_value()) < 32:  # RFC 7518 3.2: an HS256 key of at least 256 bits
            raise ValueError("serving.user_token_secret needs at least 32 characters (or none)")
        return secret

    @model_validator(mode="after")
    def _variants_distinct(self) -> "ServingSettings":
        names = [v.name for v in self.experiments]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"serving.experiments needs at least one variant, names distinct; got {names}")
        if self.default_limit > self.max_limit:
            raise ValueError(f"serving.default_limit {self.default_limit} exceeds max_limit {self.max_limit}")
        return self


class Settings(_Section):
    home: str = ".hybridrec"
    log_level: str = "INFO"
    infra: InfraSettings = InfraSettings()
    kafka: KafkaSettings = KafkaSettings()
    opensearch: OpenSearchSettings = OpenSearchSettings()
    spark: SparkSettings = SparkSettings()
    lake: LakeSettings = LakeSettings()
    synthetic: SyntheticSettings = SyntheticSettings()
    gowalla: GowallaSettings = GowallaSettings()
    signals: SignalSettings = SignalSettings()
    streaming: StreamingSettings = StreamingSettings()
    extraction: ExtractionSettings = ExtractionSettings()
    candidates: CandidateSettings = CandidateSettings()
    retrain: RetrainSettings = RetrainSettings()
    distill: DistillSettings = DistillSettings()
    serving: ServingSettings = ServingSettings()

    @model_validator(mode="after")
    def _ports_distinct(self) -> "Settings":
        ports = [port for pair in (*self.kafka.node_ports, *self.opensearch.node_ports) for port in pair]
        if len(set(ports)) != len(ports):
            raise ValueError(f"service ports must be distinct, got {ports}")
        return self

    @property
    def home_path(self) -> Path:
        path = Path(self.home)
        return path if path.is_absolute() else PROJECT_ROOT / path

    @property
    def warehouse_uri(self) -> str:
        return self.lake.warehouse or (self.home_path / "lake" / "warehouse").as_uri()

    @property
    def catalog_uri(self) -> str:
        if self.lake.uri:
            return self.lake.uri
        return f"sqlite:///{self.home_path / 'lake' / 'catalog.db'}"

    def config_hash(self) -> str:
        """Short hash of the declared settings (machine-dependent values such as ``serving.workers: 0``
        are resolved where used, not here), stamped on every artefact they produce."""
        return _short_hash(self.model_dump(mode="json"))

    def model_config_hash(self) -> str:
        """Short hash of the settings that shape a trained model (:data:`MODEL_CONFIG_SECTIONS` less
        :data:`OPERATIONAL_KEYS`): equal hashes mean the same config made the model."""
        sections = {name: getattr(self, name).model_dump(mode="json") for name in MODEL_CONFIG_SECTIONS}
        for key in OPERATIONAL_KEYS:
            *parents, leaf = key.split(".")
            node = sections
            for part in parents:
                node = node[part]
            del node[leaf]
        return _short_hash(sections)


def _short_hash(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _parse_env_value(raw: str) -> Any:
    return yaml.safe_load(raw) if raw != "" else ""


def _apply_env_overrides(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX):].split("__") if part]
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key}: '{part}' is not a config section")
        node[path[-1]] = _parse_env_value(raw)
    return data


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = _deep_merge(merged.get(key) or {}, value) if isinstance(value, dict) else value
    return merged


def _apply_topology(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Lay ``infra.cluster`` over the sections when the topology (after env overrides) is ``cluster``;
    the environment is applied again on top, so an explicit override still wins."""
    merged = _apply_env_overrides(data, environ)
    infra = merged.get("infra") or {}
    if infra.get("topology") != "cluster":
        return merged
    overlay = infra.get("cluster") or {}
    return _apply_env_overrides(_deep_merge(merged, overlay), environ)


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the config file, apply environment overrides and the topology's settings, validate."""
    environ = dict(os.environ if environ is None else environ)
    config_file = Path(path or environ.get("HYBRIDREC_CONFIG") or DEFAULT_CONFIG_FILE)
    if not config_file.exists():
        raise FileNotFoundError(f"config file not found: {config_file}")
    data = yaml.safe_load(config_file.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{config_file}: top level must be a mapping")
    return Settings.model_validate(_apply_topology(data, environ))
