"""The LLM teacher's ledger: each run labels only new texts, within its budget, and keeps every label."""

from __future__ import annotations

from hybridrec.batch.llm_teacher import LlmTeacher, read_ledger, text_key
from hybridrec.contract import TEACHER_LABELS, QueryIntent
from hybridrec.lake import Lake
from hybridrec.models.extraction import QueryTagger
from hybridrec.models.extraction.schema import Outcome, QueryTags
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
