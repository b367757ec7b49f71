"""The review student: learns which candidates the teacher keeps, keeps exact tags exact, is fast and saves whole."""

import pytest

from hybridrec.batch.review_pool import review_pool
from hybridrec.evalsets import load_injections, load_reviews, near_duplicates, normalise
from hybridrec.models.extraction.candidates import Gazetteer
from hybridrec.models.extraction.schema import Keyword, KeywordSet, Limits
from hybridrec.models.review_student import ReviewStudent
from hybridrec.taxonomy import load_taxonomy

# Written for this test: a teacher that always keeps the dish and the staff opinion, never the filler.
TEXTS = [f"The {dish} was rich and the staff were lovely, {filler} though." for dish in
         ("mushroom risotto", "duck ragu", "lamb skewers", "miso cod", "pork belly", "crab linguine")
         for filler in ("parking downtown", "monday evening", "rainy weather", "long drive")]


def teacher(text: str) -> KeywordSet:
    dish = text.split(" was ")[0].removeprefix("The ").casefold()
    return KeywordSet(keywords=(Keyword(text=dish, weight=0.9),
                                Keyword(text="staff were lovely", weight=0.8, tag="service/friendly")))


@pytest.fixture(scope="module")
def student() -> ReviewStudent:
    taxonomy = load_taxonomy()
    return ReviewStudent.fit(taxonomy, TEXTS, [teacher(t) for t in TEXTS], limits=Limits(3, 40),
                             max_input_chars=2000, min_count=1, l2=1e-4, gazetteer=Gazetteer(taxonomy))


def test_it_keeps_what_the_teacher_keeps_on_a_text_it_never_saw(student):
    (outcome,) = student.extract(["The beef brisket was rich and the staff were lovely, foggy morning though."])
    keywords = [k.text for k in outcome.value.keywords]
    assert "staff were lovely" in keywords and "beef brisket" in keywords[:2]
    assert outcome.value.tags.keys() == {"service/friendly"}


def test_exact_tags_stay_exact_and_a_denial_asserts_nothing(student):
    (outcome,) = student.extract(["Tiny room and the waiter was not friendly at all."])
    assert "service/friendly" not in outcome.value.tags


def test_save_and_load_read_the_same(student, tmp_path):
    loaded = ReviewStudent.load(student.save(tmp_path / "review-student.npz"), load_taxonomy(), student.gazetteer)
    texts = ["The duck ragu was rich and the staff were lovely.", "오늘 간 식당 직원분이 친절하셨어요"]
    assert [o.value for o in loaded.extract(texts)] == [o.value for o in student.extract(texts)]


def test_the_training_pool_holds_no_evaluation_text():
    pool = review_pool(10_000)
    evaluation = [c.text for c in load_reviews()] + [c.text for c in load_injections()]
    assert len(pool) >= 500
    assert not {normalise(t) for t in pool} & {normalise(t) for t in evaluation}
    assert not near_duplicates(pool, evaluation)


def test_the_student_backend_is_the_registrys_review_student(student, monkeypatch):
    """``extraction.backend: student`` builds the extractor from the distill run in use (the registry is
    replaced here by the fitted student; the integration test reads a real run)."""
    from hybridrec import registry
    from hybridrec.config import Settings
    from hybridrec.models.extraction import make_backends

    monkeypatch.setattr(registry, "load_review_student", lambda settings, taxonomy=None: student)
    monkeypatch.setattr("hybridrec.models.extraction.make_query_tagger", lambda *a, **k: "query student")
    settings = Settings()
    extractor, tagger = make_backends(settings.model_copy(update={
        "extraction": settings.extraction.model_copy(update={"backend": "student"})}))
    assert extractor is student and extractor.backend == "student" and tagger == "query student"
