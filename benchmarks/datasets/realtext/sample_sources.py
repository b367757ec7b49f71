"""Draw the real texts that the hand-labelled evaluation sets label (run once; the output is committed).

Yelp: 300 English reviews of at most 1,500 characters (labelling cost; 2,000 is the extractors' input
cap), uniformly at random by seed. NSMC: 120 Korean movie reviews of at least 10 characters. The
draw reads only ../shared/data; nothing of the project's word lists or generators is involved.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from hybridrec.evalsets import NSMC_SAMPLE, YELP_SAMPLE, source_rows

OUT = Path(__file__).resolve().parent / "unlabelled"


def main() -> None:
    rng = random.Random(20261129)
    OUT.mkdir(exist_ok=True)
    yelp = list(source_rows(YELP_SAMPLE))
    yelp = [r for r in yelp if len(r["text"]) <= 1500]
    picked = rng.sample(yelp, 300)
    for part, rows in (("a", picked[:150]), ("b", picked[150:])):
        with open(OUT / f"yelp_{part}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"ref": r["review_id"], "stars": r["stars"], "text": r["text"]}, ensure_ascii=False) + "\n")
    nsmc = list(source_rows(NSMC_SAMPLE))
    nsmc = [r for r in nsmc if len(r["review"].strip()) >= 10]
    with open(OUT / "nsmc.jsonl", "w", encoding="utf-8") as f:
        for r in rng.sample(nsmc, 120):
            f.write(json.dumps({"ref": r["review_id"], "rating": r["rating"], "text": r["review"]}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
