"""Real reviews to teach the review student, committed with the code so every clone learns from the same.

Drawn once (``python -m hybridrec.batch.review_pool``) from the shared Yelp and NSMC samples
(``../shared/data``, the files the real-text evaluation sets were drawn from) into
:data:`POOL_FILE`: every evaluation and red-team text is removed once normalised, and so is any
near-duplicate (character-trigram Jaccard >= 0.8), so the student is graded on reviews it never
learned from; ``tests/unit/test_realtext_contamination.py`` checks the committed file again. Texts
are short enough for the extractors' input cap, in a fixed order by seed, Yelp then NSMC.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
from pathlib import Path

from hybridrec.evalsets import (
    NSMC_SAMPLE, YELP_SAMPLE, load_injections, load_reviews, near_duplicates, normalise, source_rows,
)

POOL_FILE = Path(__file__).resolve().parent / "data" / "review_pool.jsonl.gz"
MIN_CHARS, MAX_CHARS = 10, 2000
DRAW_PER_SOURCE, DRAW_SEED = 1500, 7


def draw(per_source: int, seed: int) -> list[dict[str, str]]:
    """Up to ``per_source`` English (Yelp) and Korean (NSMC) reviews, none of them an evaluation text."""
    evaluation = [c.text for c in load_reviews()] + [c.text for c in load_injections()]
    banned = {normalise(t) for t in evaluation}
    rng = random.Random(seed)
    pool: list[dict[str, str]] = []
    for path, field, lang in ((YELP_SAMPLE, "text", "en"), (NSMC_SAMPLE, "review", "ko")):
        texts = list(dict.fromkeys(t.strip() for row in source_rows(path) if isinstance(t := row.get(field), str)))
        texts = [t for t in texts if MIN_CHARS <= len(t) <= MAX_CHARS and normalise(t) not in banned]
        rng.shuffle(texts)
        drawn = texts[: per_source * 2]  # room for the near-duplicates removed next
        near = {text for text, _, _ in near_duplicates(drawn, evaluation)}
        pool += [{"lang": lang, "source": path.parent.name, "text": t} for t in drawn if t not in near][:per_source]
    return pool


def review_pool(per_source: int) -> list[str]:
    """The first ``per_source`` committed reviews of each language, alternating, so that a budget spent in
    this order (the LLM teacher's) reads both languages alike."""
    with gzip.open(POOL_FILE, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    english, korean = ([r["text"] for r in rows if r["lang"] == lang][:per_source] for lang in ("en", "ko"))
    return [text for pair in itertools.zip_longest(english, korean) for text in pair if text is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description="Draw the review student's pool from ../shared/data")
    parser.add_argument("--per-source", type=int, default=DRAW_PER_SOURCE)
    parser.add_argument("--seed", type=int, default=DRAW_SEED)
    args = parser.parse_args()
    POOL_FILE.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in draw(args.per_source, args.seed))
    with gzip.GzipFile(POOL_FILE, "wb", mtime=0) as out:  # no timestamp: the same draw, the same bytes
        out.write(lines.encode("utf-8"))
    print(f"wrote {POOL_FILE}")


if __name__ == "__main__":
    main()
