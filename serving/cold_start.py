"""What the feed knows about a user with little or no history, and which interests drive their candidates.

Segments are the evaluation's (:mod:`hybridrec.features.segments`): ``heavy`` and ``light`` users have
history (published engaged items, a CF vector with activity, or engagement the stream saw since);
``searcher`` users have none but searched for something, so their interest tags and search words alone
find candidates (BM25 and tag matches; the words also when the taxonomy names nothing they searched
for); ``new`` users have nothing and get a broad popular/trending (and, on the map, nearby) feed that
the diversity rules spread over topics. Search tags reach the user context through the
streaming query tagger (:class:`hybridrec.models.extraction.QueryTagger`), which keeps only
interest queries: a utility query (exchange rate, weather, visa) never becomes an interest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hybridrec.features import candidates
from hybridrec.features.ranking import UserProfile
from hybridrec.features.segments import user_segment


def search_interests(context: Mapping[str, Any] | None) -> dict[str, float]:
    """Decayed interest tags of the user's recent searches (interest intent only, tagged upstream)."""
    return {t["tag"]: float(t["weight"]) for t in (context or {}).get("search_tags", ()) if t.get("weight", 0) > 0}


def search_keywords(context: Mapping[str, Any] | None, limit: int) -> tuple[str, ...]:
    """The words of the user's recent interest searches, heaviest first, named by the taxonomy or not."""
    kept = [k for k in (context or {}).get("search_keywords", ()) if k.get("weight", 0) > 0]
    return tuple(k["keyword"] for k in sorted(kept, key=lambda k: -k["weight"])[:limit])


def interest_tags(profile: UserProfile, context: Mapping[str, Any] | None, limit: int) -> dict[str, float]:
    """Published interest tags (engaged topics + past interest queries) and recent search tags, each
    part normalised to sum 1 so neither drowns the other; the ``limit`` strongest (the batch keyword
    source reads the published part the same way)."""
    return candidates.interest_tags(profile.interest_tags, search_interests(context), limit)


def segment(profile: UserProfile, has_cf_vector: bool, tags: Mapping[str, float],
            context: Mapping[str, Any] | None, keywords: tuple[str, ...], heavy_items: int) -> str:
    """The user's segment by the evaluation's rule: published engaged items count; history the published
    count misses (a CF vector with activity, engagement the stream saw since) makes the user at least light."""
    engaged = bool((context or {}).get("engaged"))
    items = profile.items or int(has_cf_vector and profile.activity > 0 or engaged)
    return user_segment(items, bool(tags or keywords), heavy_items)
