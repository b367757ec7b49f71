"""`hybridrec batch extract` on a small synthetic world in a throwaway lake: outputs, incrementality, resume."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from hybridrec.batch.extract import extract_job
from hybridrec.batch.jobs import generate_world_job
from hybridrec.config import SyntheticSettings
from hybridrec.contract import (
    CLIPS, EXTRACTION_STATE, ITEM_EMBEDDINGS, ITEM_KEYWORDS, PLACES, QUERY_TAGS, REVIEW_KEYWORDS, REVIEWS,
    SEARCH_QUERIES, TRUTH_REVIEW_TAGS, USER_EMBEDDINGS,
)
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run
from tests.conftest import lake_settings

pytestmark = pytest.mark.integration

SMALL_WORLD = SyntheticSettings(seed=3, n_users=40, n_places=20, n_clips=30, n_events=1500, n_days=7,
                                reviews_per_place=3.0, queries_per_user=1.5)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    base = lake_settings(tmp_path_factory.mktemp("extract-lake"))
    settings = base.model_copy(update={
        "synthetic": SMALL_WORLD,
        "extraction": base.extraction.model_copy(update={"chunk_docs": 50}),
        "spark": base.spark.model_copy(update={"shuffle_partitions": 2}),
    })
    generate_world_job(settings)
    return settings


def _rows(lake: Lake, spec) -> list[dict]:
    return lake.scan(spec).to_pylist()


@pytest.fixture(scope="module")
def first_run(settings):
    """A run stopped after one chunk per source (as a crash would), then the run that resumes it."""
    partial = extract_job(settings, max_chunks=1)
    lake = Lake(settings)
    after_partial = {r["doc_id"] for r in _rows(lake, EXTRACTION_STATE) if r["source"] == "review"}
    resumed = extract_job(settings)
    return partial, after_partial, resumed


def test_a_stopped_run_is_resumed_without_redoing_or_duplicating(settings, first_run):
    partial, after_partial, resumed = first_run
    lake = Lake(settings)
    reviews = lake.count(REVIEWS)
    assert partial["stopped_early"] and 0 < len(after_partial) < reviews
    assert resumed["reviews"]["accepted"] + resumed["reviews"]["rejected"] == reviews - len(after_partial)
    keywords = _rows(lake, REVIEW_KEYWORDS)
    assert len(keywords) == len({(k["review_id"], k["keyword"]) for k in keywords})
    assert {k["review_id"] for k in keywords} <= {r["review_id"] for r in _rows(lake, REVIEWS)}
    assert len({r["doc_id"] for r in _rows(lake, EXTRACTION_STATE) if r["source"] == "review"}) == reviews


def test_outputs_match_the_contract_and_the_truth(settings, first_run):
    lake = Lake(settings)
    truth = {(t["review_id"], t["tag"]) for t in _rows(lake, TRUTH_REVIEW_TAGS)}
    found = {(k["review_id"], k["tag"]) for k in _rows(lake, REVIEW_KEYWORDS) if k["tag"]}
    assert len(found & truth) / len(truth) > 0.9
    assert lake.count(QUERY_TAGS) == lake.count(SEARCH_QUERIES)
    surfaces = {(r["surface"]) for r in _rows(lake, ITEM_KEYWORDS)}
    assert surfaces == {"place", "clip"}
    embeddings = _rows(lake, ITEM_EMBEDDINGS)
    assert len(embeddings) == lake.count(PLACES) + lake.count(CLIPS)
    users = _rows(lake, USER_EMBEDDINGS)
    assert users and all(abs(np.linalg.norm(u["embedding"]) - 1) < 1e-3 for u in users if u["items"] or u["queries"])
    assert {len(e["embedding"]) for e in embeddings + users} == {512}


def test_a_rerun_reads_only_the_changed_review(settings, first_run):
    lake = Lake(settings)
    reviews = lake.scan(REVIEWS)
    changed_id = reviews["review_id"][0].as_py()
    texts = reviews["text"].to_pylist()
    texts[0] = "조용한 분위기에 오마카세가 훌륭했어요."
    edited_table = reviews.set_column(reviews.schema.get_field_index("text"), "text", pa.array(texts))
    lake.replace(REVIEWS, [edited_table], new_run(settings, "test-edit"))

    rerun = extract_job(settings)

    assert (rerun["reviews"]["accepted"], rerun["clips"]["accepted"], rerun["queries"]["accepted"]) == (1, 0, 0)
    assert rerun["item-embeddings"]["accepted"] <= 1  # only the edited review's place can have new text
    tags = {k["tag"] for k in _rows(lake, REVIEW_KEYWORDS) if k["review_id"] == changed_id}
    assert {"mood/quiet", "food/japanese/sushi/omakase"} <= tags


def test_distill_learns_from_the_extracted_world_and_serves_the_stream(settings, first_run, tmp_path):
    """`hybridrec distill` end to end on the extraction's outputs: registry row, loadable models, the
    stream's tagger is the student."""
    from hybridrec.batch.distill import distill_job
    from hybridrec.registry import distilled_files, load_review_student, load_topic_classifier, run_history
    from hybridrec.contract import QueryIntent
    from hybridrec.models.extraction import make_extractor, make_query_tagger

    distilled = settings.model_copy(update={
        "distill": settings.distill.model_copy(update={"pool_size": 3000, "review_pool_per_source": 300}),
        "retrain": settings.retrain.model_copy(update={"models_dir": str(tmp_path / "models")}),
    })
    context = distill_job(distilled)
    run_id, files = distilled_files(distilled)
    assert run_id == context["run"].run_id and set(files) == {"student", "review_student", "topic_classifier",
                                                               "teacher_labels", "metrics"}
    history = run_history(Lake(distilled))
    assert history.loc[history["run_id"] == run_id, "status"].tolist() == ["succeeded"]
    counts = context["metrics"]["labels"]
    assert sum(n for key, n in counts.items() if not key.startswith("clip/")) == len(context["labels"])
    assert context["metrics"]["student"]["tag_f1"] >= 0.5  # learned from a 3,000-query pool only

    tagger = make_query_tagger(distilled, reader=distilled.streaming.query_tagger)  # the student by default
    assert tagger.read("peru visa").intent == QueryIntent.UTILITY
    assert tagger.read("peru visa").tags == ()
    assert load_topic_classifier(distilled).predict("soccer highlights. #sports").path.startswith("sports")
    reviews = context["metrics"]["review_student"]
    assert reviews["train_texts"] + reviews["holdout_texts"] == 600 and reviews["agreement_holdout_tags"] >= 0.8
    bulk = distilled.model_copy(update={"extraction": distilled.extraction.model_copy(update={"backend": "student"})})
    extractor = make_extractor(bulk)  # `extraction.backend: student`: the run's review student
    assert extractor.header["run_id"] == run_id == load_review_student(distilled).header["run_id"]
    (read,) = extractor.extract(["The staff were lovely and the prices fair."])
    assert read.value.tags.keys() == {"service/friendly", "price/moderate"}


@pytest.mark.llm
def test_distill_with_the_real_llm_teacher_labels_the_most_searched_texts_within_its_budget(settings, first_run,
                                                                                            tmp_path):
    """The real GGUF labels a budget of new texts into the ledger; the student learns from its labels."""
    from hybridrec.batch.distill import distill_job
    from hybridrec.batch.llm_teacher import read_ledger, text_key
    from hybridrec.contract import REVIEW_TEACHER_LABELS, TEACHER_LABELS

    distilled = settings.model_copy(update={
        "distill": settings.distill.model_copy(update={"pool_size": 500, "llm_teacher": "llamacpp",
                                                       "llm_budget_texts": 4, "llm_budget_seconds": 600,
                                                       "review_pool_per_source": 100, "llm_review_budget_texts": 2}),
        "retrain": settings.retrain.model_copy(update={"models_dir": str(tmp_path / "models")}),
    })
    context = distill_job(distilled)
    llm = context["metrics"]["llm_teacher"]
    most_searched = list({text_key(t): t for t in reversed(context["labels"]["text"].tolist())}.values())[::-1][:4]
    assert llm["labelled_now"] == 4 and llm["budget_exhausted"] and llm["llm_texts_per_s"] > 0
    taught = context["labels"].query("teacher_source == 'llm'")["text"]  # where the model's reading won the vote
    assert len(taught) == llm["labels_used"] and {text_key(t) for t in taught} <= {text_key(t) for t in most_searched}
    ledger = Lake(distilled).scan(TEACHER_LABELS).to_pylist()
    assert len(ledger) == 4 and {r["teacher"] for r in ledger} == {llm["teacher"]}
    assert sorted(r["text"] for r in ledger) == sorted(most_searched)  # the log's texts come first
    assert len(read_ledger(Lake(distilled), llm["teacher"])) == 4
    assert context["metrics"]["student_teachers"] == f"offline+{llm['teacher']}"
    reviews = context["metrics"]["review_student"]
    assert reviews["llm_reviews_labelled_now"] + reviews["llm_reviews_unanswered_now"] == 2  # the reviews' budget
    assert Lake(distilled).count(REVIEW_TEACHER_LABELS) == reviews["llm_reviews_labelled_now"]
