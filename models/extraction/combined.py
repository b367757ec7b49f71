"""The teacher that combines a generative model with the offline signals (``extraction.combine_offline``).

Small local models read open-world text differently from rules, but are weak and uneven, above all in
Korean; the offline signals (morphology, the taxonomy's forms, cue words, sentence-encoder intent) are
precise where they fire. Two rules (``extraction.combine_rule``):

* ``offline_first`` (default, chosen on the real-text validation split, where the 1.5B model's aspect
  tags scored F1 0.0 in English and its intent 0.73 against the offline reader's 0.90, and the
  confidence vote below lost to the offline reader alone): the offline reader's intent and tags; the
  model adds its keywords (grounded, untagged unless the offline reader found the same tag), which
  scored better than the offline phrases on English reviews;
* ``vote``: a query's intent is whichever reader is more confident (the model's probability of its
  intent against the offline reader's), with both readers' tags when both say interest; a review keeps
  the model's keywords and tags and adds the offline tags it missed. For a stronger model.

A text the model's answer was rejected for keeps that rejection counted: the offline reading stands
in for it, and ``Outcome.reason`` still says why the model's answer was refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from hybridrec.contract import QueryIntent
from hybridrec.models.extraction.llm import MAX_QUERY_TAGS
from hybridrec.models.extraction.schema import AnswerDoc, KeywordSet, Outcome, QueryTags
from hybridrec.taxonomy import most_specific


COMBINE_RULES = ("offline_first", "vote")


def merge_review(model: Outcome[KeywordSet], offline: Outcome[KeywordSet], max_keywords: int,
                 rule: str = "offline_first") -> Outcome[KeywordSet]:
    """``vote``: the model's keywords, plus each tag the offline reader found and the model did not.
    ``offline_first``: the offline reader's tagged keywords, then the model's keywords, untagged unless
    the offline reader found the same tag."""
    if model.value is None:
        return Outcome(offline.value, model.reason, model.repaired)
    if rule == "offline_first":
        tagged = [k for k in (offline.value.keywords if offline.value else ()) if k.tag]
        offline_tags, have = {k.tag for k in tagged}, {k.text for k in tagged}
        extra = [k if k.tag in offline_tags else k.model_copy(update={"tag": None, "aspect": None})
                 for k in model.value.keywords if k.text not in have]
        return Outcome(KeywordSet(keywords=tuple([*tagged, *extra][:max_keywords])), model.reason, model.repaired)
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


def vote_query(model: Outcome[QueryTags], offline: Outcome[QueryTags], rule: str = "offline_first") -> Outcome[QueryTags]:
    """``vote``: the more confident reader's intent (and tags; both readers' tags when both say interest).
    ``offline_first``: the offline reading, with the model's keywords added where both say interest."""
    if model.value is None:
        return Outcome(offline.value, model.reason, model.repaired)
    if offline.value is None:
        return model
    if rule == "offline_first":
        value = offline.value
        if value.intent is model.value.intent is QueryIntent.INTEREST:
            value = value.model_copy(update={"keywords": tuple(dict.fromkeys((*value.keywords,
                                                                                *model.value.keywords)))})
        return Outcome(value, None, model.repaired)
    if offline.value.confidence > model.value.confidence:
        return Outcome(offline.value, None, model.repaired)
    if model.value.intent is offline.value.intent is QueryIntent.INTEREST:
        tags = most_specific((*model.value.tags, *offline.value.tags))[:MAX_QUERY_TAGS]
        return Outcome(model.value.model_copy(update={"tags": tags}), model.reason, model.repaired)
    return model


class CombinedExtractor:
    def __init__(self, generative, offline, max_keywords: int, rule: str = "offline_first"):
        self.generative = generative
        self.offline = offline
        self.max_keywords = max_keywords
        self.rule = rule
        self.backend = generative.backend

    def extract(self, texts: Sequence[str]) -> list[Outcome[KeywordSet]]:
        return [merge_review(g, o, self.max_keywords, self.rule)
                for g, o in zip(self.generative.extract(texts), self.offline.extract(texts))]


class CombinedQueryTagger:
    def __init__(self, generative, offline, rule: str = "offline_first"):
        self.generative = generative
        self.offline = offline
        self.rule = rule
        self.backend = generative.backend

    def tag_many(self, queries: Sequence[tuple[str, Sequence[AnswerDoc]]]) -> list[Outcome[QueryTags]]:
        return [vote_query(g, o, self.rule)
                for g, o in zip(self.generative.tag_many(queries), self.offline.tag_many(queries))]
