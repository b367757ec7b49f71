"""The data contract: every table and message schema, defined once.

Each table is a :class:`TableSpec` of typed columns. From it we derive the Arrow schema (pyiceberg
writes, Spark reads), the Iceberg schema and partition spec (table creation and evolution), and
the pydantic model that validates API bodies and Kafka messages. Batch, streaming and serving all
import from here; nothing else spells a column name list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from functools import cached_property
from typing import Any, Literal, Optional

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, create_model
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform, Transform
from pyiceberg.types import (
    BooleanType,
    DoubleType,
    FloatType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)


class Surface(str, Enum):
    PLACE = "place"
    CLIP = "clip"


class EventType(str, Enum):
    VIEW = "view"
    CLICK = "click"
    DWELL = "dwell"
    LIKE = "like"
    SAVE = "save"
    SHARE = "share"
    SKIP = "skip"
    VISIT = "visit"
    SEARCH = "search"


class QueryIntent(str, Enum):
    INTEREST = "interest"
    UTILITY = "utility"
    NAVIGATIONAL = "navigational"


# Column types: one name per type, mapped to Arrow, Iceberg and Python.
_ARROW = {
    "string": pa.string(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "list<string>": pa.list_(pa.string()),
    "list<float>": pa.list_(pa.float32()),
}
_ICEBERG = {
    "string": StringType,
    "int": IntegerType,
    "long": LongType,
    "float": FloatType,
    "double": DoubleType,
    "bool": BooleanType,
    "timestamp": TimestamptzType,
}
_ICEBERG_LIST_ELEMENT = {"list<string>": StringType, "list<float>": FloatType}
_PYTHON = {
    "string": str,
    "int": int,
    "long": int,
    "float": float,
    "double": float,
    "bool": bool,
    "timestamp": datetime,
    "list<string>": list[str],
    "list<float>": list[float],
}
_TRANSFORMS: dict[str, type[Transform]] = {"day": DayTransform, "identity": IdentityTransform}


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    required: bool = False
    doc: str = ""
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.dtype not in _ARROW:
            raise ValueError(f"column {self.name}: unknown type {self.dtype}")


@dataclass(frozen=True)
class TableSpec:
    """A table of the lake: namespace, name, columns, hidden partitioning and row key."""

    namespace: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    partition_by: tuple[tuple[str, str], ...] = ()
    doc: str = ""
    _by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {c.name: c for c in self.columns}
        if len(by_name) != len(self.columns):
            raise ValueError(f"{self.name}: duplicate column names")
        for name in self.key + tuple(src for src, _ in self.partition_by):
            if name not in by_name:
                raise ValueError(f"{self.name}: unknown column {name}")
        object.__setattr__(self, "_by_name", by_name)

    def relocated(self, namespace: str, name: str) -> "TableSpec":
        """The same schema under another table name, e.g. a benchmark dataset's own namespace."""
        return replace(self, namespace=namespace, name=name)

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def qualified_name(self) -> str:
        """``namespace.name``, as Spark SQL and the logs name the table."""
        return f"{self.namespace}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return self._by_name[name]

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, _ARROW[c.dtype], nullable=not c.required) for c in self.columns])

    @cached_property
    def iceberg_schema(self) -> Schema:
        fields = []
        next_id = len(self.columns) + 1  # list element ids come after the top-level ids
        for field_id, col in enumerate(self.columns, start=1):
            if col.dtype in _ICEBERG_LIST_ELEMENT:
                ftype: Any = ListType(next_id, _ICEBERG_LIST_ELEMENT[col.dtype](), element_required=False)
                next_id += 1
            else:
                ftype = _ICEBERG[col.dtype]()
            fields.append(NestedField(field_id, col.name, ftype, required=col.required, doc=col.doc or None))
        identifiers = [self.column_names.index(k) + 1 for k in self.key if self.column(k).required]
        return Schema(*fields, identifier_field_ids=identifiers if len(identifiers) == len(self.key) else [])

    @cached_property
    def partition_spec(self) -> PartitionSpec:
        parts = []
        for i, (source, transform) in enumerate(self.partition_by):
            source_id = self.column_names.index(source) + 1
            parts.append(PartitionField(source_id, 1000 + i, _TRANSFORMS[transform](), f"{source}_{transform}"))
        return PartitionSpec(*parts)

    def empty_arrow(self) -> pa.Table:
        return self.arrow_schema.empty_table()

    def to_arrow(self, columns: dict[str, Any]) -> pa.Table:
        """Arrow table in contract order and types; a missing required column is an error."""
        missing = [c.name for c in self.columns if c.required and c.name not in columns]
        if missing:
            raise ValueError(f"{self.name}: missing required columns {missing}")
        arrays = [pa.array(columns.get(c.name, [None] * _length(columns)), type=_ARROW[c.dtype]) for c in self.columns]
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema)

    @cached_property
    def model(self) -> type[BaseModel]:
        """Pydantic model of one row: what the API and Kafka messages are validated against."""
        fields: dict[str, Any] = {}
        for col in self.columns:
            py_type: Any = Literal[col.choices] if col.choices else _PYTHON[col.dtype]
            fields[col.name] = (py_type, ...) if col.required else (Optional[py_type], None)
        model_name = "".join(part.capitalize() for part in self.name.split("_")) + "Record"
        return create_model(model_name, __config__=ConfigDict(extra="forbid", strict=False), **fields)


def _length(columns: dict[str, Any]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _c(name: str, dtype: str, required: bool = False, doc: str = "", choices: tuple[str, ...] = ()) -> Column:
    return Column(name, dtype, required, doc, choices)


SURFACES = tuple(s.value for s in Surface)
EVENT_TYPES = tuple(e.value for e in EventType)
INTENTS = tuple(i.value for i in QueryIntent)

RAW, TRUTH, DERIVED, OPS = "raw", "truth", "derived", "ops"
NAMESPACES = (RAW, TRUTH, DERIVED, OPS)

USERS = TableSpec(RAW, "users", (
    _c("user_id", "string", True),
    _c("home_region", "string"),
    _c("home_lat", "double"),
    _c("home_lon", "double"),
    _c("language", "string", doc="preferred language, ISO 639-1"),
    _c("signup_at", "timestamp", True),
), key=("user_id",), doc="People who use the feeds.")

PLACES = TableSpec(RAW, "places", (
    _c("item_id", "string", True),
    _c("name", "string", True),
    _c("category_path", "string", True, "taxonomy path, e.g. food/korean/gukbap"),
    _c("lat", "double", True),
    _c("lon", "double", True),
    _c("region", "string", True),
    _c("address", "string"),
    _c("price_level", "int", doc="1 cheap .. 4 expensive"),
    _c("open_minute", "int", doc="opening time, minutes after midnight local time"),
    _c("close_minute", "int", doc="closing time, minutes after midnight; may exceed 1440 past midnight"),
    _c("created_at", "timestamp", True),
), key=("item_id",), partition_by=(("region", "identity"),), doc="Restaurants, cafés and venues of the map feed.")

CLIPS = TableSpec(RAW, "clips", (
    _c("item_id", "string", True),
    _c("creator_id", "string", True),
    _c("title", "string", True),
    _c("description", "string"),
    _c("topic_path", "string", True, "taxonomy path, e.g. sports/soccer"),
    _c("duration_s", "int"),
    _c("language", "string"),
    _c("created_at", "timestamp", True),
), key=("item_id",), partition_by=(("created_at", "day"),), doc="Short-form videos of the home feed.")

REVIEWS = TableSpec(RAW, "reviews", (
    _c("review_id", "string", True),
    _c("item_id", "string", True),
    _c("user_id", "string", True),
    _c("text", "string", True),
    _c("rating", "int", doc="1..5"),
    _c("language", "string"),
    _c("created_at", "timestamp", True),
), key=("review_id",), partition_by=(("created_at", "day"),), doc="User reviews of places (Korean and English).")

SEARCH_QUERIES = TableSpec(RAW, "search_queries", (
    _c("query_id", "string", True),
    _c("user_id", "string", True),
    _c("text", "string", True),
    _c("surface", "string", choices=SURFACES),
    _c("clicked_item_ids", "list<string>", doc="documents the user opened from the results"),
    _c("ts", "timestamp", True),
), key=("query_id",), partition_by=(("ts", "day"),), doc="What users typed into search.")

EVENTS = TableSpec(RAW, "events", (
    _c("event_id", "string", True, "unique; the exactly-once sink deduplicates on it"),
    _c("user_id", "string", True),
    _c("item_id", "string", doc="null only for type=search"),
    _c("surface", "string", True, choices=SURFACES),
    _c("event_type", "string", True, choices=EVENT_TYPES),
    _c("dwell_ms", "long"),
    _c("position", "int", doc="rank of the item in the feed that showed it"),
    _c("request_id", "string", doc="the feed response that showed the item"),
    _c("experiment_variant", "string"),
    _c("query_id", "string", doc="for type=search: the search_queries row"),
    _c("lat", "double"),
    _c("lon", "double"),
    _c("ts", "timestamp", True),
), key=("event_id",), partition_by=(("ts", "day"),), doc="Interactions with feed items.")

# Ground truth of the synthetic world: kept apart so later stages can be scored honestly.
TRUTH_USER_INTERESTS = TableSpec(TRUTH, "user_interests", (
    _c("user_id", "string", True),
    _c("tag", "string", True, "taxonomy path"),
    _c("weight", "double", True),
    _c("from_day", "int", True, "first day (0-based) this interest is active; drift adds later ones"),
), key=("user_id", "tag", "from_day"), doc="True latent interests per user.")

TRUTH_USER_TASTES = TableSpec(TRUTH, "user_tastes", (
    _c("user_id", "string", True),
    _c("tag", "string", True, "taxonomy path of a place aspect (mood, purpose, facility)"),
    _c("aspect", "string", True),
), key=("user_id", "tag"), doc="What each user looks for in a place beyond its food; places that have it engage more.")

TRUTH_ITEM_TAGS = TableSpec(TRUTH, "item_tags", (
    _c("item_id", "string", True),
    _c("tag", "string", True),
    _c("aspect", "string", True, "topic | menu | mood | purpose | price | service | facility"),
), key=("item_id", "tag"), doc="True tags of places and clips.")

TRUTH_REVIEW_TAGS = TableSpec(TRUTH, "review_tags", (
    _c("review_id", "string", True),
    _c("tag", "string", True),
    _c("aspect", "string", True),
    _c("keyword", "string", True, "surface form written into the review"),
), key=("review_id", "tag"), doc="Tags each review was written from.")

TRUTH_QUERY_LABELS = TableSpec(TRUTH, "query_labels", (
    _c("query_id", "string", True),
    _c("intent", "string", True, choices=INTENTS),
    _c("tags", "list<string>", doc="interest tags; empty for utility and navigational queries"),
), key=("query_id",), doc="True intent and interest tags of each search query.")

# ---------------------------------------------------------------- derived: content
# Written by `hybridrec batch extract` (hybridrec.batch.extract): keywords and tags read from text,
# query intent, and content embeddings of items and users in one multilingual vector space.
EXTRACTION_SOURCES = ("review", "clip", "query", "place", "user")
EXTRACTION_STATUSES = ("accepted", "rejected")

REVIEW_KEYWORDS = TableSpec(DERIVED, "review_keywords", (
    _c("review_id", "string", True),
    _c("item_id", "string", True, "the reviewed place"),
    _c("keyword", "string", True, "phrase found verbatim in the review (case-folded)"),
    _c("weight", "double", True, "0..1, relevance to the review"),
    _c("tag", "string", doc="taxonomy path the keyword maps onto; null for untagged keywords"),
    _c("aspect", "string", doc="the tag's aspect: topic | menu | mood | purpose | price | service | facility"),
    _c("language", "string"),
    _c("backend", "string", True, "offline | http | transformers"),
    _c("content_hash", "string", True, "hash of the text and extractor it was read with"),
), key=("review_id", "keyword"), doc="Keywords of each review, with weights and aspects.")

ITEM_KEYWORDS = TableSpec(DERIVED, "item_keywords", (
    _c("item_id", "string", True),
    _c("surface", "string", True, choices=SURFACES),
    _c("keyword", "string", True),
    _c("weight", "double", True, "places: summed over reviews, scaled so the top keyword is 1"),
    _c("mentions", "int", True, "reviews it was found in (places); 1 for clips"),
    _c("tag", "string"),
    _c("aspect", "string"),
), key=("item_id", "keyword"), partition_by=(("surface", "identity"),), doc="Keywords of places (aggregated over their reviews) and clips (title, description).")

QUERY_TAGS = TableSpec(DERIVED, "query_tags", (
    _c("query_id", "string", True),
    _c("user_id", "string", True),
    _c("intent", "string", True, choices=INTENTS),
    _c("tags", "list<string>", doc="interest tags; empty unless intent = interest"),
    _c("keywords", "list<string>"),
    _c("confidence", "double"),
    _c("backend", "string", True),
    _c("content_hash", "string", True, "hash of the query, its answering documents and the tagger"),
), key=("query_id",), doc="Intent and interest tags of each search query, read with its answering documents.")

ITEM_EMBEDDINGS = TableSpec(DERIVED, "item_embeddings", (
    _c("item_id", "string", True),
    _c("surface", "string", True, choices=SURFACES),
    _c("embedding", "list<float>", True, "L2-normalised"),
    _c("model", "string", True),
    _c("content_hash", "string", True, "hash of the text that was embedded"),
), key=("item_id",), doc="Content embeddings of places and clips from their text and keywords.")

USER_EMBEDDINGS = TableSpec(DERIVED, "user_embeddings", (
    _c("user_id", "string", True),
    _c("embedding", "list<float>", True, "L2-normalised, same space as item_embeddings"),
    _c("items", "int", True, "distinct items engaged with"),
    _c("queries", "int", True, "interest queries"),
    _c("model", "string", True),
    _c("as_of", "timestamp", True, "time the decay is measured from"),
), key=("user_id",), doc="Content embeddings of users: engaged items and interest queries, time-decayed.")

EXTRACTION_STATE = TableSpec(OPS, "extraction_state", (
    _c("source", "string", True, choices=EXTRACTION_SOURCES),
    _c("doc_id", "string", True),
    _c("content_hash", "string", True),
    _c("backend", "string", True),
    _c("status", "string", True, choices=EXTRACTION_STATUSES),
    _c("reason", "string", doc="why the output was rejected (or repaired)"),
    _c("run_id", "string", True),
    _c("processed_at", "timestamp", True),
), key=("source", "doc_id"), doc="Ledger of extracted documents: what is unchanged is skipped, what crashed is redone.")

TEACHER_LABELS = TableSpec(OPS, "teacher_labels", (
    _c("text_key", "string", True, "sha1 of the normalised text (evalsets.normalise): one label per spelling family"),
    _c("text", "string", True),
    _c("teacher", "string", True, "identity of the generative teacher: model, prompt and schema"),
    _c("intent", "string", doc="null when the answer was rejected", choices=INTENTS),
    _c("tags", "list<string>"),
    _c("keywords", "list<string>"),
    _c("confidence", "double", doc="the model's probability of its intent"),
    _c("reason", "string", doc="why the answer was rejected"),
    _c("seconds", "double", True, "model time spent on this text"),
    _c("run_id", "string", True),
    _c("labelled_at", "timestamp", True),
), key=("text_key", "teacher"), doc="Ledger of the LLM teacher's query labels: each night labels only texts it has not.")

REVIEW_TEACHER_LABELS = TableSpec(OPS, "review_teacher_labels", (
    _c("text_key", "string", True, "sha1 of the normalised text: one label per spelling family"),
    _c("text", "string", True),
    _c("teacher", "string", True, "identity of the generative teacher: model, prompt and schema"),
    _c("answer", "string", doc="the validated keywords and tags as JSON (KeywordSet); null when rejected"),
    _c("reason", "string", doc="why the answer was rejected (or repaired)"),
    _c("seconds", "double", True, "model time spent on this text"),
    _c("run_id", "string", True),
    _c("labelled_at", "timestamp", True),
), key=("text_key", "teacher"), doc="Ledger of the LLM teacher's review readings: each night reads only reviews it has not.")

CONTENT_TABLES = (REVIEW_KEYWORDS, ITEM_KEYWORDS, QUERY_TAGS, ITEM_EMBEDDINGS, USER_EMBEDDINGS, EXTRACTION_STATE)
# ---------------------------------------------------------------- end derived: content

# ---------------------------------------------------------------- derived: retrain
# Written by `hybridrec retrain` (hybridrec.batch.retrain): the nightly collaborative + fusion pipeline.
RUN_STATUSES = ("running", "succeeded", "failed")

INTERACTIONS = TableSpec(DERIVED, "interactions", (
    _c("user_id", "string", True),
    _c("item_id", "string", True),
    _c("surface", "string", True, choices=SURFACES),
    _c("confidence", "double", True, "decayed, weighted evidence; negative when skips dominate"),
    _c("events", "int", True),
    _c("last_ts", "timestamp", True),
    _c("run_id", "string", True),
), key=("user_id", "item_id", "surface"), partition_by=(("surface", "identity"),),
   doc="User x item confidence per surface, from events before the run's label day.")

CANDIDATES = TableSpec(DERIVED, "candidates", (
    _c("user_id", "string", True),
    _c("item_id", "string", True),
    _c("surface", "string", True, choices=SURFACES),
    _c("sources", "list<string>", True, "every candidate source that proposed the item"),
    _c("score", "double", doc="the fused ranker's score"),
    _c("rank", "int", True, "position after ranking, 1-based"),
    _c("run_id", "string", True),
), key=("user_id", "item_id", "surface"), partition_by=(("surface", "identity"),),
   doc="Ranked candidates per user of the latest runs, with the sources that found them.")

MODEL_REGISTRY = TableSpec(OPS, "model_registry", (
    _c("run_id", "string", True),
    _c("status", "string", True, choices=RUN_STATUSES),
    _c("config_hash", "string", True),
    _c("input_snapshots", "string", True, "JSON {table: snapshot id} of every Iceberg input"),
    _c("model_files", "string", doc="JSON {name: path}"),
    _c("metrics", "string", doc="JSON of headline metrics"),
    _c("indices", "string", doc="JSON {alias: index} published by the run"),
    _c("detail", "string", doc="error of a failed run"),
    _c("recorded_at", "timestamp", True),
), key=("run_id", "status"), doc="Append-only log of retrain runs: what data made which model, and how it went.")

EVALUATION_RUNS = TableSpec(OPS, "evaluation_runs", (
    _c("run_id", "string", True),
    _c("surface", "string", True, choices=SURFACES),
    _c("model", "string", True, "ranker, a candidate source alone, or popularity"),
    _c("segment", "string", True, "all | new | searcher | light | heavy (features/segments.py)"),
    _c("metric", "string", True, "recall@K, ndcg@K, coverage@K, novelty@K"),
    _c("value", "double", True),
    _c("users", "int", True),
    _c("recorded_at", "timestamp", True),
), key=("run_id", "surface", "model", "segment", "metric"), doc="Offline evaluation of each retrain run.")

RETRAIN_TABLES = (INTERACTIONS, CANDIDATES, MODEL_REGISTRY, EVALUATION_RUNS)
# ---------------------------------------------------------------- end derived: retrain

RAW_TABLES = (USERS, PLACES, CLIPS, REVIEWS, SEARCH_QUERIES, EVENTS)
TRUTH_TABLES = (TRUTH_USER_INTERESTS, TRUTH_USER_TASTES, TRUTH_ITEM_TAGS, TRUTH_REVIEW_TAGS, TRUTH_QUERY_LABELS)
ALL_TABLES = RAW_TABLES + TRUTH_TABLES + CONTENT_TABLES + RETRAIN_TABLES + (TEACHER_LABELS, REVIEW_TEACHER_LABELS)

EventRecord = EVENTS.model
SearchQueryRecord = SEARCH_QUERIES.model


def table_by_name(qualified: str) -> TableSpec:
    """Look up ``namespace.name`` (e.g. ``raw.events``)."""
    for spec in ALL_TABLES:
        if spec.qualified_name == qualified:
            return spec
    raise KeyError(f"no table {qualified!r} in the contract; known: {[f'{t.qualified_name}' for t in ALL_TABLES]}")
