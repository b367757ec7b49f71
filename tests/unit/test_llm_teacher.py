"""The LLM teacher's ledger: each run labels only new texts, within its budget, and keeps every label."""

from __future__ import annotations

from hybridrec.batch.llm_teacher import LlmReviewTeacher, LlmTeacher, read_ledger, text_key
from hybridrec.contract import REVIEW_TEACHER_LABELS, TEACHER_LABELS, QueryIntent
from hybridrec.lake import Lake
from hybridrec.models.extraction import QueryTagger
from hybridrec.models.extraction.schema import Keyword, KeywordSet, Outcome, QueryTags
from hybridrec.runinfo import new_run


class ScriptedTagger:
    """Stands in for the generative model (a unit test of the ledger around it): counts what it is asked."""

    backend = "scripted"
    identity = "scripted|v1"

    def __init__(self):
        self.asked: list[str] = []

    def tag_many(self, queries):
        self.asked += [text for text, _ in queries]
        return [Outcome(None, "unknown_tag") if "broken" in text else
                Outcome(QueryTags(intent=QueryIntent.INTEREST, tags=("sports/soccer",), keywords=(), confidence=0.8))
                for text, _ in queries]


def _teacher(settings, budget_texts: int, tagger: ScriptedTagger) -> LlmTeacher:
    limited = settings.model_copy(update={"distill": settings.distill.model_copy(update={
        "llm_teacher": "llamacpp", "llm_budget_texts": budget_texts, "llm_budget_seconds": 600})})
    return LlmTeacher(limited, tagger=QueryTagger(tagger))


def test_each_run_labels_only_new_texts_within_its_budget(tmp_lake_settings):
    lake = Lake(tmp_lake_settings)
    texts = ["soccer highlights", "Soccer  Highlights", "k league", "broken answer", "epl goals", "🍣", "  "]
    first_model = ScriptedTagger()
    first = _teacher(tmp_lake_settings, 2, first_model).label(texts, lake, new_run(tmp_lake_settings, "test"))
    assert first_model.asked == ["soccer highlights", "k league"]  # a spelling variant is the same text
    assert (first.labelled_now, first.budget_exhausted) == (2, True)
    assert set(first.outcomes) == {text_key("soccer highlights"), text_key("k league")}

    second_model = ScriptedTagger()
    second = _teacher(tmp_lake_settings, 10, second_model).label(texts, lake, new_run(tmp_lake_settings, "test"))
    assert second_model.asked == ["broken answer", "epl goals", "🍣"] and not second.budget_exhausted  # not "  "
    assert second.outcomes[text_key("broken answer")].reason == "unknown_tag"  # a rejection is an answer: kept
    assert second.outcomes[text_key("Soccer Highlights")].value.tags == ("sports/soccer",)
    assert lake.count(TEACHER_LABELS) == 5  # nothing labelled twice

    third_model = ScriptedTagger()
    third = _teacher(tmp_lake_settings, 10, third_model).label(texts, lake, new_run(tmp_lake_settings, "test"))
    assert third_model.asked == [] and third.labelled_now == 0 and len(third.outcomes) == 5


def test_a_call_that_got_no_answer_is_not_kept_and_is_asked_again(tmp_lake_settings):
    lake = Lake(tmp_lake_settings)
    down = ScriptedTagger()
    down.tag_many = lambda queries: [Outcome(None, "not_json") for _ in queries]  # the endpoint is down
    first = _teacher(tmp_lake_settings, 5, down).label(["k league", "epl"], lake, new_run(tmp_lake_settings, "t"))
    assert (first.labelled_now, first.unanswered_now, first.outcomes) == (0, 2, {})
    up = ScriptedTagger()
    _teacher(tmp_lake_settings, 5, up).label(["k league", "epl"], lake, new_run(tmp_lake_settings, "t"))
    assert up.asked == ["k league", "epl"]


def test_text_keys_ignore_width_case_and_spacing_but_not_punctuation():
    assert text_key("ＮＢＡ  Finals") == text_key("nba finals") and text_key("c#") != text_key("c")
    assert text_key(" \t") is None


def test_another_teacher_has_a_ledger_of_its_own(tmp_lake_settings):
    lake = Lake(tmp_lake_settings)
    _teacher(tmp_lake_settings, 5, ScriptedTagger()).label(["k league"], lake, new_run(tmp_lake_settings, "test"))
    other = ScriptedTagger()
    other.identity = "scripted|v2"
    _teacher(tmp_lake_settings, 5, other).label(["k league"], lake, new_run(tmp_lake_settings, "test"))
    assert other.asked == ["k league"]
    assert set(read_ledger(lake, "scripted|v1")) == set(read_ledger(lake, "scripted|v2")) == {text_key("k league")}


class ScriptedReader:
    """Stands in for the generative model as a review reader: one tagged keyword per review it is asked."""

    backend = "scripted"
    identity = "scripted-reviews|v1"

    def __init__(self):
        self.asked: list[str] = []

    def extract(self, texts):
        self.asked += list(texts)
        return [Outcome(None, "unknown_tag") if "broken" in text else
                Outcome(KeywordSet(keywords=(Keyword(text="quiet", weight=0.9, tag="mood/quiet"),))) for text in texts]


def _review_teacher(settings, budget_texts: int, reader: ScriptedReader) -> LlmReviewTeacher:
    limited = settings.model_copy(update={"distill": settings.distill.model_copy(update={
        "llm_teacher": "llamacpp", "llm_review_budget_texts": budget_texts, "llm_review_budget_seconds": 600})})
    return LlmReviewTeacher(limited, extractor=reader)


def test_reviews_have_a_ledger_of_their_own_and_each_run_reads_only_new_ones(tmp_lake_settings):
    lake = Lake(tmp_lake_settings)
    reviews = ["Quiet and cosy.", "quiet  and COSY.", "broken answer here", "Loud music."]
    first_reader = ScriptedReader()
    first = _review_teacher(tmp_lake_settings, 2, first_reader).label(reviews, lake, new_run(tmp_lake_settings, "t"))
    assert first_reader.asked == ["Quiet and cosy.", "broken answer here"] and first.budget_exhausted
    assert first.outcomes[text_key("quiet and cosy.")].value.tags == {"mood/quiet": 0.9}  # the answer round-trips
    second_reader = ScriptedReader()
    second = _review_teacher(tmp_lake_settings, 5, second_reader).label(reviews, lake, new_run(tmp_lake_settings, "t"))
    assert second_reader.asked == ["Loud music."] and second.in_ledger == 3
    assert second.outcomes[text_key("broken answer here")].reason == "unknown_tag"  # a rejection is kept
    assert lake.count(REVIEW_TEACHER_LABELS) == 3 and not lake.exists(TEACHER_LABELS)  # queries' ledger untouched


class ScriptedOffline:
    backend = "offline"

    def extract(self, texts):
        return [Outcome(KeywordSet(keywords=(Keyword(text="music", weight=0.5),))) for _ in texts]


def test_the_review_teacher_combines_the_llm_reading_where_its_ledger_has_one(tmp_lake_settings):
    from hybridrec.batch.review_distill import teacher_readings

    lake, reviews = Lake(tmp_lake_settings), ["Quiet music.", "Loud music.", "broken answer here"]
    teacher = _review_teacher(tmp_lake_settings, 10, ScriptedReader())
    read, answers, stats = teacher_readings(teacher.settings, reviews, ScriptedOffline(), lake,
                                            new_run(tmp_lake_settings, "t"), teacher)
    assert set(answers) == {text_key("Quiet music."), text_key("Loud music.")}  # the rejected answer is no label
    # offline_first (the default): the model adds its keywords; its tag stands only where the offline reader agrees
    assert [[(k.text, k.tag) for k in r.value.keywords] for r in read] == [[("quiet", None)], [("quiet", None)],
                                                                         [("music", None)]]
    assert (stats["llm_reviews_labelled_now"], stats["llm_labels_used"], stats["llm_rejected_of_pool"]) == (3, 2, 1)
