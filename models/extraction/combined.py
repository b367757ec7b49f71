"""The teacher that combines a generative model with the offline signals (``extraction.combine_offline``).

Small local models read open-world text better than rules (an anime title is an interest, "the staff
went out of their way" is friendly service) but are weak and uneven, above all in Korean; the
offline signals (morphology, the taxonomy's forms, cue words, sentence-encoder intent) are precise
where they fire. Combined:

* a query's intent is whichever reader is more confident (the model's probability of its intent
  against the offline reader's), with that reader's tags (both readers' when both say interest);
  "Peru visa" read as travel at 0.38 by the model loses to the cue word "visa";
* a review keeps the model's keywords and grounded tags, and adds the tags the offline reader found
  that the model did not (each on its own grounded keyword), within ``max_keywords``.

A text the model's answer was rejected for keeps that rejection counted: the offline reading stands
in for it, and ``Outcome.reason`` still says why the model's answer was refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from hybridrec.contract import QueryIntent
from hybridrec.models.extraction.llm import MAX_QUERY_TAGS
from hybridrec.models.extraction.schema import AnswerDoc, KeywordSet, Outcome, QueryTags
from hybridrec.taxonomy import most_specific


def merge_review(model: Outcome[KeywordSet], offline: Outcome[KeywordSet], max_keywords: int) -> Outcome[KeywordSet]:
    """The model's keywords, plus each tag the offline reader found and the model did not."""
    if model.value is None:
        return Outcome(offline.value, model.reason, model.repaired)
    keywords = list(model.value.keywords)
    have_tags = {k.tag for k in keywords if k.tag}
    have_texts = {k.text for k in keywords}
    for extra in (k for k in (offline.value.keywords if offline.value else ()) if k.tag and k.tag not in have_tags):
        if extra.text in have_texts:
            continue
        untagged = [i for i, k in enumerate(keywords) if k.tag is None]
        if len(keywords) >= max_keywords:
            if not untagged:
                break
            keywords.pop(min(untagged, key=lambda i: keywords[i].weight))
        keywords.append(extra)
        have_tags.add(extra.tag)
    return Outcome(KeywordSet(keywords=tuple(keywords)), model.reason, model.repaired)


def vote_query(model: Outcome[QueryTags], offline: Outcome[QueryTags]) -> Outcome[QueryTags]:
    """The more confident reader's intent (and tags; both readers' tags when both say interest)."""
    if model.value is None:
        return Outcome(offline.value, model.reason, model.repaired)
    if offline.value is None:
        return model
    if offline.value.confidence > model.value.confidence:
        return Outcome(offline.value, None, model.repaired)
    if model.value.intent is offline.value.intent is QueryIntent.INTEREST:
        tags = most_specific((*model.value.tags, *offline.value.tags))[:MAX_QUERY_TAGS]
        return Outcome(model.value.model_copy(update={"tags": tags}), model.reason, model.repaired)
    return model


class CombinedExtractor:
    def __init__(self, generative, offline, max_keywords: int):
        self.generative = generative
        self.offline = offline
        self.max_keywords = max_keywords
        self.backend = generative.backend

    def extract(self, texts: Sequence[str]) -> list[Outcome[KeywordSet]]:
        return [merge_review(g, o, self.max_keywords)
                for g, o in zip(self.generative.extract(texts), self.offline.extract(texts))]


class CombinedQueryTagger:
    def __init__(self, generative, offline):
        self.generative = generative
        self.offline = offline
        self.backend = generative.backend

    def tag_many(self, queries: Sequence[tuple[str, Sequence[AnswerDoc]]]) -> list[Outcome[QueryTags]]:
        return [vote_query(g, o) for g, o in zip(self.generative.tag_many(queries), self.offline.tag_many(queries))]
