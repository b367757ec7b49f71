"""The answer cache asks the model only for questions it has not answered, across processes and restarts."""

from __future__ import annotations

from hybridrec.models.extraction.answer_cache import AnswerStore, CachedChatModel, cached
from hybridrec.models.extraction.llm import ChoiceScorer


class CountingModel:
    """A stand-in for a chat model (the wrapper's unit test): answers with the user text, counts calls."""

    name = "counting"
    identity = "counting|v1"

    def __init__(self, fail_on: str = ""):
        self.asked: list[str] = []
        self.fail_on = fail_on

    def complete(self, conversations, schema=None):
        answers = []
        for conversation in conversations:
            text = conversation[-1]["content"]
            self.asked.append(text)
            answers.append("" if text == self.fail_on else f'{{"echo": "{text}"}}')
        return answers


class ScoringModel(CountingModel):
    def choice_probabilities(self, conversation, answer_prefix, choices):
        self.asked.append("choices:" + conversation[-1]["content"])
        return {c: 1 / len(choices) for c in choices}


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "read"}, {"role": "user", "content": text}]


def test_each_question_is_asked_once_even_after_a_restart(tmp_path):
    path = tmp_path / "answers.sqlite"
    first = CountingModel()
    model = cached(first, path)
    assert model.complete([_ask("a"), _ask("b")]) == ['{"echo": "a"}', '{"echo": "b"}']
    again = CountingModel()
    reopened = cached(again, path)  # a new process on the same file
    assert reopened.complete([_ask("b"), _ask("c"), _ask("a")]) == ['{"echo": "b"}', '{"echo": "c"}', '{"echo": "a"}']
    assert first.asked == ["a", "b"] and again.asked == ["c"]
    assert (reopened.hits, reopened.misses) == (2, 1)


def test_a_new_schema_or_model_misses_and_a_failed_answer_is_asked_again(tmp_path):
    store = AnswerStore(tmp_path / "answers.sqlite")
    inner = CountingModel(fail_on="x")
    model = CachedChatModel(inner, store)
    model.complete([_ask("a")], schema={"type": "object"})
    model.complete([_ask("a")], schema={"type": "array"})
    assert model.complete([_ask("x")]) == [""] and model.complete([_ask("x")]) == [""]
    other = CountingModel()
    other.identity = "counting|v2"
    CachedChatModel(other, store).complete([_ask("a")], schema={"type": "object"})
    assert inner.asked == ["a", "a", "x", "x"] and other.asked == ["a"]
    assert len(store) == 3  # (a, object, v1), (a, array, v1), (a, object, v2); the failures are not kept


def test_misses_are_asked_together_in_small_groups(tmp_path):
    class Batching(CountingModel):
        def __init__(self):
            super().__init__()
            self.calls: list[int] = []

        def complete(self, conversations, schema=None):
            self.calls.append(len(conversations))
            return super().complete(conversations, schema)

    inner = Batching()
    cached(inner, tmp_path / "a.sqlite").complete([_ask(str(i)) for i in range(6)])
    assert inner.calls == [4, 2]


def test_choice_scores_are_cached_and_only_scorers_score(tmp_path):
    assert not isinstance(cached(CountingModel(), tmp_path / "a.sqlite"), ChoiceScorer)
    inner = ScoringModel()
    model = cached(inner, tmp_path / "b.sqlite")
    assert isinstance(model, ChoiceScorer)
    first = model.choice_probabilities(_ask("q"), '{"intent": "', ["interest", "utility"])
    assert model.choice_probabilities(_ask("q"), '{"intent": "', ["interest", "utility"]) == first
    assert inner.asked == ["choices:q"]
