"""Keywords and tags from reviews and clips, intent and tags of search queries, behind one small interface.

``make_extractor(settings)`` / ``make_query_tagger(settings)`` build the configured backend
(``extraction.backend``: ``offline`` default, ``student`` for the distilled review and query
students (the bulk path), ``llamacpp`` for a local GGUF model run by llama.cpp, ``http`` for an
OpenAI-compatible endpoint, ``transformers`` for a local model on torch); switching is a config
change, never a code change. Whatever
the backend, outputs pass :mod:`.schema` validation or are rejected with a counted reason.

Modules: ``untrusted`` (cleaning and delimiting user text), ``schema`` (validation), ``candidates``
(phrases and MMR), ``offline`` (the default backend), ``llm`` (generative backends).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Protocol

from hybridrec.config import Settings
from hybridrec.contract import QueryIntent
from hybridrec.models.extraction.schema import AnswerDoc, Keyword, KeywordSet, Outcome, QueryTags
from hybridrec.models.text import load_embedder
from hybridrec.taxonomy import load_taxonomy

log = logging.getLogger(__name__)

__all__ = ["AnswerDoc", "Keyword", "KeywordExtractor", "KeywordSet", "Outcome", "QueryTagger", "QueryTags",
           "RejectedOutput", "make_backends", "make_extractor", "make_query_tagger"]


class RejectedOutput(ValueError):
    def __init__(self, backend: str, reason: str):
        super().__init__(f"{backend} output rejected: {reason}")
        self.reason = reason


class KeywordExtractor(Protocol):
    backend: str

    def extract(self, texts: Sequence[str]) -> list[Outcome[KeywordSet]]:
        """One outcome per text, in order: validated keywords, or the reason they were rejected."""


class _TagsMany(Protocol):
    backend: str

    def tag_many(self, queries: Sequence[tuple[str, Sequence[AnswerDoc]]]) -> list[Outcome[QueryTags]]: ...


class QueryTagger:
    """Intent and interest tags of a search query, read together with the documents that answered it.

    The one query-tagging interface of the project: the stream (``read``), distill and the batch
    extraction (``tag_many``) and the benchmarks all hold one of these, whatever reads the query
    (:func:`make_query_tagger`). ``cache_size`` remembers the readings of recent texts (popular
    queries repeat a lot)."""

    def __init__(self, impl: _TagsMany, cache_size: int = 0):
        self._impl = impl
        self.backend = impl.backend
        self.identity: str = getattr(impl, "identity", impl.backend)  # the model and prompt, for ledgers
        if cache_size:
            self.read = functools.lru_cache(maxsize=cache_size)(self.read)  # type: ignore[method-assign]

    def read(self, query_text: str) -> QueryTags:
        """What the stream folds: the query alone; an answer rejected twice reads as no interest."""
        try:
            return self.tag(query_text)
        except RejectedOutput as rejected:
            log.warning("query %r not tagged: %s", query_text[:80], rejected)
            return QueryTags(intent=QueryIntent.NAVIGATIONAL, confidence=0.0)

    def tag(self, query_text: str, answer_docs: Sequence[AnswerDoc | str] = ()) -> QueryTags:
        """Raises :class:`RejectedOutput` when the backend's answer fails validation twice."""
        (outcome,) = self.tag_many([(query_text, answer_docs)])
        if outcome.value is None:
            raise RejectedOutput(self.backend, outcome.reason or "rejected")
        return outcome.value

    def tag_many(self, queries: Sequence[tuple[str, Sequence[AnswerDoc | str]]]) -> list[Outcome[QueryTags]]:
        normalised = [(text, [AnswerDoc(d) if isinstance(d, str) else d for d in docs]) for text, docs in queries]
        return self._impl.tag_many(normalised)


def make_backends(settings: Settings, threads: int | None = None) -> tuple[KeywordExtractor, QueryTagger]:
    """The configured backend as a keyword extractor and a query tagger sharing one model."""
    cfg, taxonomy = settings.extraction, load_taxonomy()
    if cfg.backend == "offline":
        extractor, tagger = _offline_backends(settings, threads)
        return extractor, QueryTagger(tagger)
    if cfg.backend == "student":  # the distilled students of distill.student_run or the newest distill run
        from hybridrec.registry import load_review_student

        return load_review_student(settings, taxonomy), make_query_tagger(settings, threads, reader="student")
    from hybridrec.models.extraction.llm import (
        ChatModel, GenerativeExtractor, HttpChatModel, LlamaCppChatModel, TransformersChatModel,
    )

    model: ChatModel
    if cfg.backend == "llamacpp":
        from hybridrec.models.extraction.gguf import model_file, models_dir

        path = model_file(cfg.llamacpp.model, cfg.llamacpp.model_path, settings.home_path)
        model = LlamaCppChatModel(cfg.llamacpp, path, threads,
                                  prefix_cache=models_dir(settings.home_path) / "prefix-cache")
    elif cfg.backend == "http":
        model = HttpChatModel(cfg.http)
    else:
        model = TransformersChatModel(cfg.generative)
    if cfg.answer_cache:
        from hybridrec.models.extraction.answer_cache import cached

        model = cached(model, settings.home_path / cfg.answer_cache)
    from hybridrec.models.extraction.grounding import TagGrounder

    grounder = TagGrounder(taxonomy, load_embedder(cfg.embedder, threads), cfg.tag_grounding)
    generative = GenerativeExtractor(cfg, taxonomy, model, cfg.backend, grounder)
    if not cfg.combine_offline:
        return generative, QueryTagger(generative)
    from hybridrec.models.extraction.combined import CombinedExtractor, CombinedQueryTagger

    offline_extractor, offline_tagger = _offline_backends(settings, threads)
    return (CombinedExtractor(generative, offline_extractor, cfg.max_keywords, cfg.combine_rule),
            QueryTagger(CombinedQueryTagger(generative, offline_tagger, cfg.combine_rule)))


def _offline_backends(settings: Settings, threads: int | None):
    from hybridrec.models.extraction.offline import OfflineKeywordExtractor, OfflineQueryTagger, TaxonomyMatcher

    cfg = settings.extraction
    matcher = TaxonomyMatcher(load_taxonomy(), load_embedder(cfg.ranking_embedder, threads), cfg.tag_similarity)
    return OfflineKeywordExtractor(cfg, matcher), OfflineQueryTagger(cfg, matcher, load_embedder(cfg.embedder, threads))


def make_extractor(settings: Settings, threads: int | None = None) -> KeywordExtractor:
    return make_backends(settings, threads)[0]


QUERY_READERS = ("extraction", "rules", "student")


def make_query_tagger(settings: Settings, threads: int | None = None, reader: str = "extraction",
                      cache_size: int = 0) -> QueryTagger:
    """``reader``: ``extraction`` (the configured backend, the teacher), ``rules`` (cue words and taxonomy
    forms, no model) or ``student`` (the distilled student of ``distill.student_run`` or the newest
    distill run; without one this fails and says so rather than quietly reading with something else)."""
    from hybridrec.models.extraction.rules import RuleQueryReader, StudentQueryReader

    cfg = settings.extraction
    if reader == "extraction":
        impl = make_backends(settings, threads)[1]._impl
    elif reader == "rules":
        impl = RuleQueryReader(load_taxonomy(), cfg.max_keyword_chars)
    elif reader == "student":
        from hybridrec.registry import load_student

        student = load_student(settings)
        log.info("query tagging by the student of %s", student.header.get("run_id"))
        impl = StudentQueryReader(student, cfg.max_keyword_chars)
    else:
        raise ValueError(f"unknown query reader {reader!r}: one of {', '.join(QUERY_READERS)}")
    return QueryTagger(impl, cache_size)
