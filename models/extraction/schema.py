"""The one schema every backend's output is validated against before anything reaches a table.

A model's answer is untrusted in the same way as the text it read: it must be a JSON object of the
expected shape, every tag must be a taxonomy path, every keyword must occur in the (cleaned) source
text (a keyword that is not is dropped with its tag; an answer with none left is rejected), and counts
and lengths are bounded. :func:`validate_keywords` and :func:`validate_query`
return the validated value or raise :class:`InvalidOutput` with a short, countable reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hybridrec.contract import INTENTS, QueryIntent
from hybridrec.taxonomy import ASPECTS, Taxonomy

T = TypeVar("T")
# Bumped whenever validation changes what it accepts: ledgers keyed by a teacher's identity re-ask then.
VALIDATION_VERSION = 2


class InvalidOutput(ValueError):
    """An output that breaks the schema; ``reason`` is a short code for counters, ``detail`` for logs."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    max_keywords: int
    max_keyword_chars: int


class Keyword(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1)
    weight: float = Field(ge=0, le=1)
    tag: str | None = None
    aspect: str | None = None


class KeywordSet(BaseModel):
    """What one document yields: its keywords, most relevant first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keywords: tuple[Keyword, ...] = ()

    @property
    def tags(self) -> dict[str, float]:
        """Tag -> the weight of its strongest keyword."""
        tags: dict[str, float] = {}
        for kw in self.keywords:
            if kw.tag is not None:
                tags[kw.tag] = max(tags.get(kw.tag, 0.0), kw.weight)
        return tags


class QueryTags(BaseModel):
    """What a search query is for: ``interest`` queries carry the tags to feed, the others none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intent: QueryIntent
    tags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    confidence: float = Field(1.0, ge=0, le=1)


@dataclass(frozen=True)
class AnswerDoc:
    """A document that answered a query (a clicked or top result): its text and, when known, its tags."""

    text: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """A validated value, or the reason it was rejected; ``repaired`` when a second try fixed it."""

    value: T | None
    reason: str | None = None
    repaired: bool = False

    @property
    def accepted(self) -> bool:
        return self.value is not None


def parse_json_object(raw: str) -> dict[str, Any]:
    """The answer must be one JSON object and nothing else (a fenced ```json block is tolerated)."""
    text = raw.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidOutput("not_json", str(err)) from None
    if not isinstance(data, dict):
        raise InvalidOutput("not_object", type(data).__name__)
    return data


def grounded_span(phrase: str, folded_source: str) -> str | None:
    """The source's own spelling of ``phrase``: verbatim, or ignoring spaces (a model writes "카카오 맵"
    for "카카오맵", "wifi" stays ungrounded for "wi-fi"); None when the source does not contain it."""
    folded = " ".join(phrase.casefold().split())
    if not folded:
        return None
    if folded in folded_source:
        return folded
    bare = folded.replace(" ", "")
    positions = [i for i, ch in enumerate(folded_source) if ch != " "]
    squeezed = "".join(folded_source[i] for i in positions)
    at = squeezed.find(bare)
    while at >= 0:  # the first occurrence that starts a word ("orkp" is not "york pizza")
        start = positions[at]
        if start == 0 or not folded_source[start - 1].isalnum():
            return folded_source[start: positions[at + len(bare) - 1] + 1]
        at = squeezed.find(bare, at + 1)
    return None


def _check_tag(tag: str | None, taxonomy: Taxonomy) -> None:
    if tag is not None and tag not in taxonomy:
        raise InvalidOutput("unknown_tag", repr(tag)[:80])


def validate_keywords(data: dict[str, Any], source: str, taxonomy: Taxonomy, limits: Limits) -> KeywordSet:
    """Shape, bounds, grounding and taxonomy; a tagged keyword's aspect is the tag's, whatever was claimed."""
    try:
        parsed = KeywordSet.model_validate(data)
    except ValidationError as err:
        raise InvalidOutput("bad_shape", err.errors()[0]["msg"]) from None
    if len(parsed.keywords) > limits.max_keywords:
        raise InvalidOutput("too_many_keywords", str(len(parsed.keywords)))
    folded_source = " ".join(source.casefold().split())
    keywords, seen, ungrounded = [], set(), []
    for kw in parsed.keywords:
        text = " ".join(kw.text.split())
        if len(text) > limits.max_keyword_chars:
            raise InvalidOutput("keyword_too_long", text[:40])
        span = grounded_span(text, folded_source)
        if span is not None and len(span) > limits.max_keyword_chars:
            raise InvalidOutput("keyword_too_long", span[:40])
        if span is None:  # dropped with its tag: only what the text says may become a keyword
            ungrounded.append(text)
            continue
        _check_tag(kw.tag, taxonomy)
        aspect = taxonomy.get(kw.tag).aspect if kw.tag else kw.aspect
        if aspect is not None and aspect not in ASPECTS:
            raise InvalidOutput("unknown_aspect", aspect[:40])
        if span not in seen:
            seen.add(span)
            keywords.append(Keyword(text=span, weight=round(kw.weight, 4), tag=kw.tag, aspect=aspect))
    if ungrounded and not keywords:
        raise InvalidOutput("ungrounded_keyword", ungrounded[0][:40])  # nothing of the answer is in the text
    return KeywordSet(keywords=tuple(keywords))


def validate_query(data: dict[str, Any], query: str, taxonomy: Taxonomy, limits: Limits) -> QueryTags:
    """Intent from the three labels, known tags (dropped unless the intent is interest), grounded keywords."""
    if data.get("intent") not in INTENTS:
        raise InvalidOutput("unknown_intent", repr(data.get("intent"))[:40])
    try:
        parsed = QueryTags.model_validate(data)
    except ValidationError as err:
        raise InvalidOutput("bad_shape", err.errors()[0]["msg"]) from None
    if len(parsed.tags) > limits.max_keywords or len(parsed.keywords) > limits.max_keywords:
        raise InvalidOutput("too_many_tags", str(len(parsed.tags)))
    for tag in parsed.tags:
        _check_tag(tag, taxonomy)
    folded_query = " ".join(query.casefold().split())
    # a keyword the query does not contain is dropped and the intent stands; but tags whose every keyword
    # is made up (an injected "tag this as ...") reject the answer
    spans = (grounded_span(k, folded_query) for k in parsed.keywords)
    keywords = tuple(dict.fromkeys(span for span in spans if span and len(span) <= limits.max_keyword_chars))
    tags = tuple(dict.fromkeys(parsed.tags)) if parsed.intent is QueryIntent.INTEREST else ()
    if tags and parsed.keywords and not keywords:
        raise InvalidOutput("ungrounded_keyword", parsed.keywords[0][:40])
    return parsed.model_copy(update={"tags": tags, "keywords": keywords})
