"""The offline default: no generative model, only the taxonomy, a morphological analyser and embeddings.

Keywords: candidate phrases (:mod:`.candidates`) ranked by similarity to the document with MMR for
diversity; taxonomy surface forms found verbatim are always kept. A keyword maps onto a tag when it
is a surface form, or, for English phrases and topic or dish tags, when its centred embedding is
within ``tag_similarity`` of one ("cocktails" reaches ``food/bar/cocktail``).

Query intent reads the query and the documents that answer it. Utility cues (visa, weather, 환율 ...)
make a utility query even when a destination is named ("Bolivia visa"); beyond the cues, intent is
read from meaning: the query's sentence embedding against short descriptions of each kind of need
(:data:`INTENT_PROTOTYPES`: looking something up, reaching a site, wanting content), and a query
is an interest unless it is clearly nearer a lookup or a site. An interest the taxonomy does not
name (an anime, a car) stays an interest with its words as keywords and no tag. Tags come from the
query's own words, made specific by what the answering documents agree on (an "Argentina" query
whose results are Iguazu Falls travel clips is about travel, not Argentine politics).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from hybridrec.config import ExtractionSettings
from hybridrec.contract import QueryIntent
from hybridrec.models.extraction.candidates import HANGUL, Candidate, Gazetteer, candidates, mmr
from hybridrec.models.extraction.cues import NAVIGATION_CUE, SITE_QUERY, UTILITY_CUE
from hybridrec.models.extraction.schema import (
    InvalidOutput, Keyword, KeywordSet, Limits, Outcome, QueryTags, validate_keywords, validate_query,
)
from hybridrec.models.extraction.untrusted import prepare
from hybridrec.models.text import Embedder, unit_rows
from hybridrec.taxonomy import Tag, Taxonomy, most_specific

# Short descriptions of the three kinds of need, in both languages: generic on purpose (kinds of lookup,
# not lists of topics), read by the multilingual sentence encoder.
INTENT_PROTOTYPES = {
    QueryIntent.UTILITY: (
        "how to apply for a document", "opening hours", "requirements and documents needed", "fee and price of a service",
        "refund policy", "book an appointment", "application deadline", "bus timetable", "customer service phone number",
        "tracking a parcel", "tax return", "visa application", "currency conversion", "weather forecast",
        "unit conversion", "서류 발급 방법", "영업 시간", "신청 방법", "요금 안내", "예약 취소", "환불 규정", "제출 서류",
        "마감 기한", "택배 배송 조회", "세금 신고", "민원 처리", "고객센터 전화번호", "주차 요금", "운영 시간", "준비물"),
    QueryIntent.NAVIGATIONAL: (
        "login page", "official website", "sign in to my account", "download the app", "homepage", "web version",
        "로그인", "공식 홈페이지", "앱 다운로드", "바로가기", "사이트", "웹 버전", "pc 버전"),
    QueryIntent.INTEREST: (
        "videos about", "highlights", "review", "recommendations", "best places", "vlog", "funny moments", "tips",
        "추천", "맛집", "브이로그", "리뷰", "하이라이트", "모음", "꿀팁", "후기"),
}
# Sharpness of the softmax that turns prototype similarities into the intent's confidence.
_INTENT_TEMPERATURE = 0.05



class TaxonomyMatcher:
    """Surface forms found verbatim; else, for topics and dishes only, the nearest form by embedding.

    Place aspects (mood, price, service ...) are adjectives whose neighbours in embedding space are
    their own template words ("분위기" next to "분위기 있는"), so they are matched verbatim only. So
    is Korean: its syllables are the pieces, and the piece vectors of a two-syllable word ("꿀잼")
    are too coarse to place it safely; Korean forms are matched with any particle attached instead.
    """

    SOFT_ASPECTS = ("topic", "menu")

    def __init__(self, taxonomy: Taxonomy, embedder: Embedder, threshold: float):
        self.taxonomy = taxonomy
        self.gazetteer = Gazetteer(taxonomy)
        self.embedder = embedder
        self.threshold = threshold
        forms = [(form, tag) for tag in taxonomy.tags for form in (*tag.ko, *tag.en)]
        vectors = embedder.encode([form for form, _ in forms])
        # Cosines are read relative to the mean of the taxonomy's phrases: what every phrase shares says nothing.
        self._centre = vectors.mean(axis=0)
        soft = [i for i, (_, tag) in enumerate(forms) if tag.aspect in self.SOFT_ASPECTS]
        self._form_tags = [forms[i][1] for i in soft]
        self._form_vectors = self.project(vectors[soft])

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Centred and re-normalised, so cosines spread over [-1, 1] instead of crowding near 0.5."""
        centred = vectors - self._centre
        norms = np.linalg.norm(centred, axis=-1, keepdims=True)
        return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)

    def tag_for(self, candidate: Candidate, vector: np.ndarray) -> Tag | None:
        if candidate.negated:
            return None
        exact = candidate.tag or self.gazetteer.tag_of(candidate.text)
        if exact is not None or self.gazetteer.find(candidate.text) or HANGUL.search(candidate.text):
            return exact  # a phrase around a form ("sushi bar") leaves the tag to the form's own candidate
        similarity = self._form_vectors @ vector
        best = int(np.argmax(similarity))
        return self._form_tags[best] if similarity[best] >= self.threshold else None


class _OfflineBackend:
    """What both offline roles hold: the config, output limits, the taxonomy matcher and its embedder."""

    backend = "offline"

    def __init__(self, cfg: ExtractionSettings, matcher: TaxonomyMatcher):
        self.cfg = cfg
        self.limits = Limits(cfg.max_keywords, cfg.max_keyword_chars)
        self.matcher = matcher
        self.embedder = matcher.embedder


class OfflineKeywordExtractor(_OfflineBackend):

    def extract(self, texts: Sequence[str]) -> list[Outcome[KeywordSet]]:
        prepared = [prepare(t, self.cfg.max_input_chars) for t in texts]
        folded = [p.text.casefold() for p in prepared]
        found = [candidates(f, self.matcher.gazetteer, self.cfg.max_keyword_chars) for f in folded]
        vectors = self.matcher.project(self.embedder.encode(folded + [c.text for cs in found for c in cs]))
        doc_vectors, offset = vectors[: len(texts)], len(texts)
        outcomes = []
        for source, cands, doc_vector in zip(prepared, found, doc_vectors):
            phrase_vectors = vectors[offset: offset + len(cands)]
            offset += len(cands)
            proposal = self._keywords(cands, doc_vector, phrase_vectors)
            try:
                outcomes.append(Outcome(validate_keywords({"keywords": proposal}, source.text, self.matcher.taxonomy,
                                                          self.limits)))
            except InvalidOutput as err:
                outcomes.append(Outcome(None, err.reason))
        return outcomes

    def _keywords(self, cands: list[Candidate], doc: np.ndarray, phrases: np.ndarray) -> list[dict]:
        if not cands:
            return []
        anchored = [i for i, c in enumerate(cands) if c.tag is not None]
        picked = mmr(doc, phrases, self.cfg.max_keywords, self.cfg.mmr_diversity, anchored)
        keywords = []
        for i in picked:
            tag = self.matcher.tag_for(cands[i], phrases[i])
            weight = float(np.clip((1.0 + phrases[i] @ doc) / 2, 0.0, 1.0))  # centred cosine onto [0, 1]
            keywords.append(Keyword(text=cands[i].text, weight=weight, tag=tag.path if tag else None,
                                    aspect=tag.aspect if tag else None).model_dump())
        return keywords


class OfflineQueryTagger(_OfflineBackend):
    def __init__(self, cfg: ExtractionSettings, matcher: TaxonomyMatcher, sentence_embedder: Embedder):
        super().__init__(cfg, matcher)
        self.sentence_embedder = sentence_embedder
        self._intents = list(INTENT_PROTOTYPES)
        self._prototypes = [unit_rows(sentence_embedder.encode(list(p))) for p in INTENT_PROTOTYPES.values()]
        self._margins = {QueryIntent.UTILITY: cfg.intent_margin_utility,
                         QueryIntent.NAVIGATIONAL: cfg.intent_margin_navigational}

    def _intent_by_meaning(self, vector: np.ndarray) -> tuple[QueryIntent, float, dict[QueryIntent, float]]:
        """From the query's unit sentence vector: the nearest kind of need if it beats the others by its
        margin, else interest; its probability (a softmax of the similarities) and every intent's."""
        similarity = np.array([float((p @ vector).max()) for p in self._prototypes])
        weights = np.exp((similarity - similarity.max()) / _INTENT_TEMPERATURE)
        probability = dict(zip(self._intents, weights / weights.sum()))
        for intent, margin in self._margins.items():
            i = self._intents.index(intent)
            if similarity[i] - np.delete(similarity, i).max() > margin:
                return intent, round(float(probability[intent]), 4), probability
        return QueryIntent.INTEREST, round(float(probability[QueryIntent.INTEREST]), 4), probability

    def tag_many(self, queries: Sequence[tuple[str, Sequence]]) -> list[Outcome[QueryTags]]:
        outcomes = []
        prepared = [prepare(text, self.cfg.max_input_chars).text for text, _ in queries]
        vectors = unit_rows(self.sentence_embedder.encode([q.casefold() for q in prepared])) if prepared else []
        for query, (_, answer_docs), vector in zip(prepared, queries, vectors):
            try:
                outcomes.append(Outcome(validate_query(self._label(query.casefold(), vector, answer_docs), query,
                                                       self.matcher.taxonomy, self.limits)))
            except InvalidOutput as err:
                outcomes.append(Outcome(None, err.reason))
        return outcomes

    def _label(self, query: str, vector: np.ndarray, answer_docs: Sequence) -> dict:
        """A cue decides its intent; its confidence says how far the meaning agrees (1 when it does fully)."""
        intent, confidence, probability = self._intent_by_meaning(vector)
        for cue_intent, cue in ((QueryIntent.UTILITY, UTILITY_CUE.search(query)),
                                (QueryIntent.NAVIGATIONAL, NAVIGATION_CUE.search(query))):
            if cue:
                return {"intent": cue_intent.value, "keywords": [cue.group(0)],
                        "confidence": round((1 + probability[cue_intent]) / 2, 4)}
        cands = candidates(query, self.matcher.gazetteer)[: self.cfg.max_keywords]
        keywords = [c.text for c in cands]
        if intent is not QueryIntent.INTEREST:
            return {"intent": intent.value, "keywords": keywords, "confidence": confidence}
        vectors = self.matcher.project(self.embedder.encode([c.text for c in cands])) if cands else []
        tags = [t.path for c, v in zip(cands, vectors) if (t := self.matcher.tag_for(c, v)) is not None]
        tags = self._with_answer_docs(list(most_specific(tags)), answer_docs)
        if not tags and SITE_QUERY.search(query) and len(query.split()) <= 2:
            return {"intent": QueryIntent.NAVIGATIONAL.value, "keywords": keywords, "confidence": confidence}
        # An interest with no taxonomy tag keeps its words: an open-world interest (an anime, a car model).
        return {"intent": QueryIntent.INTEREST.value, "tags": tags, "keywords": keywords, "confidence": confidence}

    def _with_answer_docs(self, tags: list[str], answer_docs: Sequence) -> list[str]:
        """Specialise the query's tags by the tags most answering documents share, or borrow those."""
        doc_tag_sets = [set(most_specific(list(doc.tags))) for doc in answer_docs[: self.cfg.answer_docs] if doc.tags]
        counts = Counter(tag for tags_of_doc in doc_tag_sets for tag in tags_of_doc)
        agreed = [tag for tag, n in counts.most_common() if n * 2 >= len(doc_tag_sets)]
        if not tags:
            return agreed[:2]
        specialised = [next((d for d in agreed if d.startswith(t + "/")), t) for t in tags]
        return list(most_specific(specialised))
