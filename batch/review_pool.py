"""Real reviews to teach the review student: the shared Yelp and NSMC samples minus every evaluation text.

The real-text evaluation sets were drawn from the same two files, so each evaluation text (and the
red-team set's) is removed from the pool once normalised, and so is any near-duplicate
(character-trigram Jaccard >= 0.8): the student is graded on reviews it never learned from.
Pool texts are short enough for the extractors' input cap and drawn in a fixed order by seed.
"""

from __future__ import annotations

import random

from hybridrec.evalsets import (
    NSMC_SAMPLE, YELP_SAMPLE, load_injections, load_reviews, near_duplicates, normalise, source_rows,
)

MIN_CHARS, MAX_CHARS = 10, 2000


def review_pool(per_source: int, seed: int) -> list[str]:
    """Up to ``per_source`` English (Yelp) and Korean (NSMC) reviews, none of them an evaluation text."""
    evaluation = [c.text for c in load_reviews()] + [c.text for c in load_injections()]
    banned = {normalise(t) for t in evaluation}
    rng = random.Random(seed)
    pool: list[str] = []
    for path, field in ((YELP_SAMPLE, "text"), (NSMC_SAMPLE, "review")):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the review student learns from the shared real reviews")
        texts = list(dict.fromkeys(t.strip() for row in source_rows(path) if isinstance(t := row.get(field), str)))
        texts = [t for t in texts if MIN_CHARS <= len(t) <= MAX_CHARS and normalise(t) not in banned]
        rng.shuffle(texts)
        drawn = texts[: per_source * 2]  # room for the near-duplicates removed next
        near = {text for text, _, _ in near_duplicates(drawn, evaluation)}
        pool += [t for t in drawn if t not in near][:per_source]
    return pool
