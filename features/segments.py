"""User segments, one set of names for the offline evaluation, feed responses and serving metrics.

A user is ``heavy`` from ``retrain.heavy_user_items`` engaged items, ``light`` with fewer but some
engagement, ``searcher`` with no engagement but interest searches (their tags or words are all a feed
can go by), ``new`` with neither. The evaluation and a feed request assign them with the same function
from the same two facts, so an offline segment's figures and an online segment's traffic are about
the same users.
"""

from __future__ import annotations

NEW, SEARCHER, LIGHT, HEAVY = "new", "searcher", "light", "heavy"
SEGMENTS = (NEW, SEARCHER, LIGHT, HEAVY)


def user_segment(engaged_items: int, searched: bool, heavy_items: int) -> str:
    """The segment of a user with ``engaged_items`` engaged items who did (not) search for an interest."""
    if engaged_items >= heavy_items:
        return HEAVY
    if engaged_items > 0:
        return LIGHT
    return SEARCHER if searched else NEW
