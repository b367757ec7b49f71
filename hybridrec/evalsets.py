"""The real-text evaluation sets (``benchmarks/datasets/realtext``): loading, the split, and text identity.

The sets are real reviews (Yelp, NSMC) and hand-written Korean place reviews and search queries,
labelled by hand against ``LABELLING.md``; they are for evaluation only. Each text falls in the
``validation`` or the ``test`` half by a hash of its normalised form, so a method is tuned on one
half and the other is scored once. :func:`normalise` and :func:`near_duplicates` are what the
contamination test and the student's hold-out split use to call two texts the same.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import hybridrec.bench
from hybridrec.config import PROJECT_ROOT

DATA_DIR = Path(hybridrec.bench.__file__).parent / "datasets" / "realtext"  # package data: a wheel has them too
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"  # the real-text sources the sets were drawn from
YELP_SAMPLE = SHARED_DATA / "yelp_review_text_sample" / "yelp_academic_dataset_review.head.json"
NSMC_SAMPLE = SHARED_DATA / "korean_reviews" / "nsmc_raw_first200movies.jsonl"
REVIEW_FILES = ("reviews_en_a.jsonl", "reviews_en_b.jsonl", "reviews_ko_nsmc.jsonl", "reviews_ko_written.jsonl")
QUERY_FILES = ("queries_ko.jsonl", "queries_en.jsonl")
SPLITS = ("validation", "test")
PLACE_ASPECTS = ("mood", "purpose", "price", "service", "facility")

_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Case, width, spacing and punctuation folded away: what makes two texts the same text."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def split_of(text: str) -> str:
    return SPLITS[hashlib.sha1(normalise(text).encode()).digest()[0] % 2]


@dataclass(frozen=True)
class ReviewCase:
    id: str
    lang: str
    source: str
    text: str
    tags: frozenset[str]
    negated: frozenset[str]
    keywords: tuple[str, ...]

    @property
    def split(self) -> str:
        return split_of(self.text)


@dataclass(frozen=True)
class QueryCase:
    id: str
    lang: str
    text: str
    intent: str
    tags: frozenset[str]
    interest: str
    outside_taxonomy: bool
    kinds: tuple[str, ...]

    @property
    def split(self) -> str:
        return split_of(self.text)


def source_rows(path: Path) -> Iterator[dict]:
    """Rows of a real-text source's JSON lines, skipping any line that is not a whole JSON object (the
    Yelp sample is cut mid-record); the committed evaluation sets are read strictly instead."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                yield row


def _rows(names: Sequence[str], data_dir: Path) -> Iterable[dict]:
    for name in names:
        path = data_dir / name
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)


def load_reviews(data_dir: Path = DATA_DIR) -> list[ReviewCase]:
    return [ReviewCase(r["id"], r["lang"], r["source"], r["text"], frozenset(r["tags"]), frozenset(r["negated"]),
                       tuple(r["keywords"])) for r in _rows(REVIEW_FILES, data_dir)]


def load_queries(data_dir: Path = DATA_DIR) -> list[QueryCase]:
    return [QueryCase(r["id"], r["lang"], r["text"], r["intent"], frozenset(r["tags"]), r.get("interest", ""),
                      bool(r.get("outside_taxonomy")), tuple(r.get("kinds", ()))) for r in _rows(QUERY_FILES, data_dir)]


@dataclass(frozen=True)
class InjectionCase:
    id: str
    lang: str
    kind: str  # review | query
    text: str
    injected: frozenset[str]
    genuine: frozenset[str]
    technique: str

    @property
    def split(self) -> str:
        return split_of(self.text)


REDTEAM_FILE = DATA_DIR.parent / "redteam" / "injections.jsonl"


def load_injections(path: Path = REDTEAM_FILE) -> list[InjectionCase]:
    return [InjectionCase(r["id"], r["lang"], r["kind"], r["text"], frozenset(r["injected_tags"]),
                          frozenset(r["genuine_tags"]), r["technique"]) for r in _rows((path.name,), path.parent)]


def trigrams(text: str) -> frozenset[str]:
    folded = normalise(text)
    return frozenset(folded[i: i + 3] for i in range(max(len(folded) - 2, 1)))


def near_duplicates(texts: Sequence[str], others: Iterable[str], threshold: float = 0.8) -> list[tuple[str, str, float]]:
    """Pairs (text, other, Jaccard) whose character-trigram Jaccard reaches ``threshold``.

    An inverted index over the trigrams of ``texts`` keeps this linear in ``others``: a pair can only
    reach the threshold if it shares at least ``threshold`` of the smaller set's trigrams.
    """
    grams = [trigrams(t) for t in texts]
    index: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(grams):
        for gram in g:
            index[gram].append(i)
    found = []
    for other in others:
        other_grams = trigrams(other)
        shared: dict[int, int] = defaultdict(int)
        for gram in other_grams:
            for i in index.get(gram, ()):
                shared[i] += 1
        for i, n in shared.items():
            jaccard = n / (len(grams[i]) + len(other_grams) - n)
            if jaccard >= threshold:
                found.append((texts[i], other, round(jaccard, 3)))
    return found
