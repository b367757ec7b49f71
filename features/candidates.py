"""The candidate pool, defined once for the nightly batch and for each feed request.

Batch scores every item exactly (:mod:`hybridrec.batch.candidates`); serving asks OpenSearch for each
source's best items and re-scores them from the documents (:mod:`hybridrec.serving.candidates`). Both
then hand every (user, source, item, score) they found to :func:`pool`, which is the only definition of

* a source's list: its ``depth`` best unseen items, best first, ties by item id;
* ``<source>_rank``: the item's 1-based place in that list (never re-counted after the pool is cut);
* the pool: the union of the lists cut to ``size`` items per user by reciprocal-rank fusion.

and the score formulas below are the only definition of each source's score. The ranker thus learns
on the same rows, with the same rank and score features, as it is served.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from hybridrec.features.ranking import SOURCES

RRF_K = 60
"""Reciprocal-rank fusion constant: an item's fused score is Σ over its sources of 1 / (RRF_K + rank)."""
TOPIC_EPSILON = 1e-3
"""Weight floor of a topic's items in the content source without vectors: zero-popularity items stay in."""
TIE_DECIMALS = 9
"""Scores equal to this many decimals are ties (broken by item id): batch and serving compute the same
formulas in a different order or precision, which must not reorder a list."""


def popular_score(popularity: np.ndarray | float) -> np.ndarray | float:
    return np.log1p(popularity)


def trending_score(trending: np.ndarray | float, popularity: np.ndarray | float) -> np.ndarray | float:
    """Share of recent engagement weighted by overall engagement; a source proposes only items above zero."""
    return trending * np.log1p(popularity)


def topic_score(affinity: np.ndarray | float, popularity: np.ndarray | float) -> np.ndarray | float:
    """The content source without content vectors: the user's topic affinity times the item's popularity."""
    return affinity * (np.log1p(popularity) + TOPIC_EPSILON)


def geo_score(popularity: np.ndarray | float, distance_km: np.ndarray | float, radius_km: float) -> np.ndarray | float:
    """Popular places near the user; only places within ``radius_km`` are proposed."""
    return (np.log1p(popularity) + 1.0) / (1.0 + distance_km / radius_km)


def interest_tags(published: Mapping[str, float], searched: Mapping[str, float], limit: int) -> dict[str, float]:
    """The keyword source's tags: the published interest tags and the tags of recent searches (serving's
    live context; none in batch), each part normalised to sum 1, the ``limit`` strongest (ties by tag)."""
    merged: dict[str, float] = {}
    for part in (published, searched):
        total = sum(part.values())
        for tag, weight in part.items():
            if total > 0:
                merged[tag] = merged.get(tag, 0.0) + weight / total
    return dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])


def keyword_score(tags: Mapping[str, float], item_tags: Iterable[str]) -> float:
    """Sum of the interest weights of the item's tags (what a ``constant_score`` term per tag adds up to)."""
    return float(sum(tags.get(t, 0.0) for t in set(item_tags)))


def covisit_seeds(engaged: Mapping[str, float], limit: int) -> list[str]:
    """The engaged items whose co-visited neighbours become candidates: the ``limit`` strongest, ties by id."""
    return [i for i, _ in sorted(engaged.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def _tie_key(scores: np.ndarray) -> np.ndarray:
    return np.round(scores, TIE_DECIMALS)


def pool(user_ids: Sequence[str], sources: Sequence[str], item_ids: Sequence[str], scores: Sequence[float],
         depth: int, size: int) -> dict[str, np.ndarray]:
    """The ranked pool from every (user, source, item, score) the sources found, excluded items already dropped.

    Per user and source the best ``depth`` items (a repeated item counts with its best score) form the
    source's list and their places are ``<source>_rank``; the union is cut to the ``size`` items of highest
    fused rank (ties by item id). Returns columns ``user_id``, ``item_id``, ``fused`` and
    ``<source>_score``/``<source>_rank`` for every source in :data:`SOURCES` (NaN where it did not propose
    the item), rows by user id, then fused rank."""
    scores = np.asarray(scores, dtype=float)
    keep = np.isfinite(scores)
    users, items = np.asarray(user_ids, dtype=object)[keep], np.asarray(item_ids, dtype=object)[keep]
    source_names = np.asarray(sources, dtype=object)[keep]
    unknown = set(source_names) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown candidate sources {sorted(unknown)}; known: {SOURCES}")
    scores = scores[keep]
    user_code, user_names = pd.factorize(users, sort=True)
    item_code, item_names = pd.factorize(items, sort=True)  # codes in id order: ties by code are ties by id
    source_code = np.array([SOURCES.index(s) for s in source_names], dtype=np.int64)

    order = np.lexsort((item_code, -_tie_key(scores), source_code, user_code))
    u, s, i, v = user_code[order], source_code[order], item_code[order], scores[order]
    first = np.ones(len(order), dtype=bool)  # the best score of a repeated (user, source, item)
    if len(order):
        triple = (u * len(SOURCES) + s) * len(item_names) + i
        _, firsts = np.unique(triple, return_index=True)
        first[:] = False
        first[firsts] = True
    u, s, i, v = u[first], s[first], i[first], v[first]
    group = u * len(SOURCES) + s
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(group) else np.array([], dtype=int)
    rank = np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)])) + 1
    listed = rank <= depth
    u, s, i, v, rank = u[listed], s[listed], i[listed], v[listed], rank[listed]

    pair, pair_of_row = np.unique(u * len(item_names) + i, return_inverse=True)
    fused = np.bincount(pair_of_row, weights=1.0 / (RRF_K + rank), minlength=len(pair))
    pair_user, pair_item = pair // max(len(item_names), 1), pair % max(len(item_names), 1)
    by_fused = np.lexsort((pair_item, -_tie_key(fused), pair_user))
    user_starts = np.flatnonzero(np.r_[True, pair_user[by_fused][1:] != pair_user[by_fused][:-1]]) if len(pair) \
        else np.array([], dtype=int)
    place = np.arange(len(pair)) - np.repeat(user_starts, np.diff(np.r_[user_starts, len(pair)]))
    chosen = by_fused[place < size]
    row_of_pair = np.full(len(pair), -1)
    row_of_pair[chosen] = np.arange(len(chosen))

    out = {"user_id": np.asarray(user_names, dtype=object)[pair_user[chosen]],
           "item_id": np.asarray(item_names, dtype=object)[pair_item[chosen]], "fused": fused[chosen]}
    row = row_of_pair[pair_of_row]
    for code, source in enumerate(SOURCES):
        values, ranks = np.full(len(chosen), np.nan), np.full(len(chosen), np.nan)
        mine = (s == code) & (row >= 0)
        values[row[mine]], ranks[row[mine]] = v[mine], rank[mine]
        out[f"{source}_score"], out[f"{source}_rank"] = values, ranks
    return out
