"""The real-text evaluation sets stay apart from everything the project generates or trains on.

Generated and training text: every string of the synthetic generator's and the query pool's word
lists and templates, the taxonomy's surface forms, the texts of the default synthetic world (its
reviews, clip titles and search log, which the distill teacher labels), the distill pool, the old
gold set and the real reviews the review student learns from. No evaluation text may equal one of
them once normalised (case, width, spacing, punctuation) or be a near-duplicate (character-trigram
Jaccard >= 0.8).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType

import pyarrow as pa
import pytest

from hybridrec.batch import query_pool
from hybridrec.batch.distill import held_out, load_gold
from hybridrec.batch.query_pool import QueryPool
from hybridrec.batch.review_pool import review_pool
from hybridrec.synthetic import generate_world, text as synthetic_text
from hybridrec.config import Settings, SyntheticSettings
from hybridrec.contract import CLIPS, REVIEWS, SEARCH_QUERIES
from hybridrec.evalsets import (
    DATA_DIR, REDTEAM_FILE, load_injections, load_queries, load_reviews, near_duplicates, normalise, split_of,
)
from hybridrec.taxonomy import load_taxonomy


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from _strings(v)


def _module_lists(module: ModuleType) -> set[str]:
    return {s for name, value in vars(module).items() if name.isupper() and not isinstance(value, str)
            for s in _strings(value)}


@pytest.fixture(scope="module")
def evaluation_texts() -> list[str]:
    return [c.text for c in load_reviews()] + [c.text for c in load_queries()] + [c.text for c in load_injections()]


@pytest.fixture(scope="module")
def generated_texts() -> set[str]:
    texts = _module_lists(synthetic_text) | _module_lists(query_pool)
    texts |= {form for tag in load_taxonomy().tags for form in (*tag.ko, *tag.en)}
    cfg = Settings().distill
    texts |= set(QueryPool(load_taxonomy(), cfg.seed).write(cfg.pool_size))
    texts |= {g.text for g in load_gold()[1]}
    texts |= set(review_pool(10_000))  # every review of the review student's committed pool
    columns = {REVIEWS.name: ["text"], CLIPS.name: ["title", "description"], SEARCH_QUERIES.name: ["text"]}
    for spec, table in generate_world(SyntheticSettings(n_events=200_000)):
        for column in columns.get(spec.name, ()):
            texts |= {t for t in pa.compute.unique(table[column]).to_pylist() if t}
    return texts


def test_evaluation_sets_are_loaded_whole_and_split_in_two(evaluation_texts):
    assert len(load_reviews()) >= 600 and len(load_queries()) >= 400
    assert {split_of(t) for t in evaluation_texts} == {"validation", "test"}
    assert len({normalise(t) for t in evaluation_texts}) == len(evaluation_texts), "an evaluation text repeats"


def test_no_evaluation_text_equals_a_generated_or_training_text(evaluation_texts, generated_texts):
    generated = {normalise(t) for t in generated_texts}
    assert len(generated) > 10_000
    shared = [t for t in evaluation_texts if normalise(t) in generated]
    assert shared == []


def test_no_evaluation_text_is_a_near_duplicate_of_a_generated_or_training_text(evaluation_texts, generated_texts):
    assert near_duplicates(evaluation_texts, generated_texts, threshold=0.8) == []


def test_near_duplicates_are_found_across_case_spacing_and_a_small_edit():
    found = near_duplicates(["Quiet cafe to study in Seongsu"], ["quiet cafe to study in seongsu!", "loud bar"])
    assert [(a, b) for a, b, _ in found] == [("Quiet cafe to study in Seongsu", "quiet cafe to study in seongsu!")]
    assert near_duplicates(["성수 조용한 카페 추천"], ["성수조용한 카페추천해줘요"], threshold=0.7)
    assert not near_duplicates(["성수 조용한 카페 추천"], ["성수 조용한 카페 추천해줘요"], threshold=0.8)


def test_the_students_holdout_keeps_variants_of_one_query_on_one_side():
    variants = ["Bolivia Visa", "bolivia visa", "bolivia  visa!", "BOLIVIA-VISA"]
    assert len({held_out(v, 0.5) for v in variants}) == 1


def test_every_file_has_a_card():
    assert (DATA_DIR / "README.md").is_file() and (DATA_DIR / "LABELLING.md").is_file()
    assert (REDTEAM_FILE.parent / "README.md").is_file() and len(load_injections()) >= 60
    for path in DATA_DIR.glob("*.jsonl"):
        assert all(json.loads(line)["text"] for line in path.read_text("utf-8").splitlines() if line.strip())
