"""A short, honest reason per feed item: the user's own interests it matches, else the source that found it.

Personal reasons name what the user searched for or liked; they go only to the user themself
(a verified user claim, :mod:`hybridrec.serving.auth`). Anyone else gets :data:`GENERIC_REASONS`,
which name the kind of source and nothing the user did: not the searches or search words (the
``keyword`` source), not the engagements (co-visitation, CF, content similarity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hybridrec.taxonomy import Taxonomy

NOUNS = {"place": "places", "clip": "clips"}
SOURCE_REASONS = {  # most personal first: the first source that found the item explains it
    "covisit": "people who liked what you liked also liked this",
    "graph": "liked by people with tastes like yours",
    "als": "liked by people with tastes like yours",
    "content": "similar to what you liked",
    "keyword": "matches what you searched for",
    "geo": "popular near you",
    "trending": "trending right now",
    "popular": "popular on {surface}",
    "fallback": "popular right now",
}
GENERIC_REASONS = {
    **{source: "recommended for you" for source in ("covisit", "graph", "als", "content", "keyword")},
    "geo": "popular in this area",
    "trending": SOURCE_REASONS["trending"],
    "popular": SOURCE_REASONS["popular"],
    "fallback": SOURCE_REASONS["fallback"],
}


def tag_label(taxonomy: Taxonomy, tag: str) -> str:
    """The tag's English surface form (``sports/soccer`` → ``soccer``)."""
    if tag in taxonomy:
        names = taxonomy.get(tag).surface("en")
        if names:
            return names[0]
    return tag.rsplit("/", 1)[-1].replace("_", " ")


def _quoted(labels: Sequence[str]) -> str:
    quoted = [f"'{label}'" for label in labels]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def generic_reason(sources: Sequence[str], surface: str) -> str:
    """Why an item is in the feed, told to a caller that is not the user: nothing the user did."""
    for source in GENERIC_REASONS:
        if source in sources:
            return GENERIC_REASONS[source].format(surface="the map" if surface == "place" else "clips")
    return "recommended for you"


def reason(doc: Mapping[str, Any], sources: Sequence[str], surface: str, liked: Mapping[str, float],
           searched: Mapping[str, float], taxonomy: Taxonomy, max_labels: int = 2, personal: bool = False) -> str:
    """"because you liked places with 'ramen' and 'japanese'" when the item's tags meet the user's
    interests (engaged topics first, then searches); otherwise why its source proposed it.
    ``personal=False``: the :func:`generic_reason`, whatever the user's interests."""
    if not personal:
        return generic_reason(sources, surface)
    tags = list(dict.fromkeys(doc.get("tags") or [doc.get("topic_path", "")]))
    for interests, template in ((liked, "because you liked {noun} with {labels}"),
                                (searched, "because you searched for {labels}")):
        shared = sorted((t for t in tags if interests.get(t, 0) > 0), key=lambda t: (-interests[t], -t.count("/")))
        if shared:
            labels = list(dict.fromkeys(tag_label(taxonomy, t) for t in shared))[:max_labels]
            return template.format(noun=NOUNS.get(surface, "items"), labels=_quoted(labels))
    for source in SOURCE_REASONS:
        if source in sources:
            return SOURCE_REASONS[source].format(surface="the map" if surface == "place" else "clips")
    return "recommended for you"
