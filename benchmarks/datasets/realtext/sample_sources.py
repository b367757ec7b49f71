"""Draw the real texts that the hand-labelled evaluation sets label (run once; the output is committed).

Yelp: 300 English reviews of at most 1,500 characters (labelling cost; 2,000 is the extractors' input
cap), uniformly at random by seed. NSMC: 120 Korean movie reviews of at least 10 characters. The
draw reads only ../shared/data; nothing of the project's word lists or generators is involved.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "unlabelled"


def _complete_json_lines(path: Path) -> list[dict]:
    """JSON lines, skipping a last line cut short (the Yelp sample's file is truncated mid-record)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def main() -> None:
    rng = random.Random(20261129)
    OUT.mkdir(exist_ok=True)
    yelp = _complete_json_lines(SHARED / "yelp_review_text_sample" / "yelp_academic_dataset_review.head.json")
    yelp = [r for r in yelp if len(r["text"]) <= 1500]
    picked = rng.sample(yelp, 300)
    for part, rows in (("a", picked[:150]), ("b", picked[150:])):
        with open(OUT / f"yelp_{part}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"ref": r["review_id"], "stars": r["stars"], "text": r["text"]}, ensure_ascii=False) + "\n")
    nsmc = _complete_json_lines(SHARED / "korean_reviews" / "nsmc_raw_first200movies.jsonl")
    nsmc = [r for r in nsmc if len(r["review"].strip()) >= 10]
    with open(OUT / "nsmc.jsonl", "w", encoding="utf-8") as f:
        for r in rng.sample(nsmc, 120):
            f.write(json.dumps({"ref": r["review_id"], "rating": r["rating"], "text": r["review"]}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
