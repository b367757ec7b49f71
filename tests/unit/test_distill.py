"""Distillation pieces without services: the gold set, label cleaning, scoring, the student and the classifier."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from hybridrec.batch.distill import GoldQuery, clean_labels, held_out, load_gold, score_tagger
from hybridrec.batch.query_pool import QueryPool, typo
from hybridrec.models.student import QueryStudent, TopicClassifier, Vocabulary, text_features
from hybridrec.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()


def test_the_gold_set_is_valid_and_covers_the_hard_cases():
    version, gold = load_gold()
    assert version >= 1 and len(gold) >= 300
    assert {"utility-with-place", "utility", "navigational", "trip-planning", "sibling", "typo", "short"} <= {
        g.case for g in gold}
    hangul = sum(any("\uac00" <= ch <= "\ud7a3" for ch in g.text) for g in gold)
    assert 0.3 * len(gold) < hangul < 0.7 * len(gold)  # Korean and English both well represented
    by_text = {g.text: g for g in gold}
    assert by_text["볼리비아 비자"].intent == "utility" and by_text["Bolivia visa"].tags == ()
    assert "sports" not in {t.split("/")[0] for t in by_text["아르헨티나 여행"].tags}


@pytest.mark.parametrize("row, problem", [
    ('{q: "x", intent: interest, tags: [sports/cricket], case: short}', "not a topic"),
    ('{q: "x", intent: interest, tags: [], case: short}', "needs tags"),
    ('{q: "x", intent: utility, tags: [sports/soccer], case: short}', "needs tags"),
    ('{q: "x", intent: wish, tags: [], case: short}', "unknown intent"),
    ('{q: "x", intent: interest, tags: [mood/quiet], case: short}', "not a topic"),
])
def test_an_invalid_gold_row_is_refused(row, problem):
    with pytest.raises(ValueError, match=problem):
        load_gold(TAXONOMY, f"version: 1\nqueries:\n  - {row}\n")


def test_a_repeated_gold_query_is_refused():
    row = '{q: "축구", intent: interest, tags: [sports/soccer], case: short}'
    with pytest.raises(ValueError, match="more than once"):
        load_gold(TAXONOMY, f"version: 1\nqueries:\n  - {row}\n  - {row}\n")


def _label(text, intent, tags, confidence=0.9, reason=None, source="pool", answered=None, agreement=1.0):
    answered_intent, answered_tags = answered or (None, None)
    return {"text": text, "source": source, "teacher_intent": intent, "teacher_tags": tuple(tags),
            "teacher_confidence": confidence, "teacher_reason": reason, "answered_intent": answered_intent,
            "answered_tags": json.dumps(answered_tags) if answered_tags is not None else None,
            "answer_agreement": agreement}


def test_noisy_teacher_labels_are_dropped_with_their_reason():
    rows = pd.DataFrame([
        _label("rejected", None, (), 0.0, reason="tag outside the taxonomy"),
        _label("unsure", "utility", (), confidence=0.3),
        _label("split answers", "interest", ["travel/south-america"], source="log",
               answered=("interest", ["travel/south-america"]), agreement=0.4),
        _label("prompts differ", "interest", ["sports/soccer"], source="log", answered=("utility", [])),
        _label("a mood", "interest", ["mood/quiet"]),
        _label("a dish", "interest", ["food/korean/gukbap/sundae-gukbap"]),
        _label("argentina", "interest", ["travel"], source="log",
               answered=("interest", ["travel/south-america"]), agreement=0.8),
        _label("visa", "utility", ()),
    ])
    cleaned = clean_labels(rows, TAXONOMY, min_confidence=0.7, min_answer_agreement=0.6).set_index("text")
    assert cleaned["status"].to_dict() == {
        "rejected": "rejected", "unsure": "low-confidence", "split answers": "answer-disagreement",
        "prompts differ": "prompt-disagreement", "a mood": "outside-taxonomy", "a dish": "kept",
        "argentina": "kept", "visa": "kept"}
    assert cleaned.at["a dish", "tags"] == ("food/korean/gukbap",)  # a dish stands for its category
    assert cleaned.at["argentina", "tags"] == ("travel/south-america",)  # the label read with results wins
    assert cleaned.at["visa", "tags"] == ()


def test_an_llm_label_is_not_replaced_by_the_offline_reading_of_its_answers():
    rows = pd.DataFrame([
        {**_label("son heung-min goals", "interest", ["sports/soccer"], source="log", answered=("navigational", [])),
         "teacher_source": "llm"},
        {**_label("split", "interest", ["sports/soccer"], source="log", answered=("interest", ["sports/soccer"]), agreement=0.3),
         "teacher_source": "llm"},
        {**_label("naver", "interest", ["sports/soccer"], source="log", answered=("navigational", [])),
         "teacher_source": "offline"},
    ])
    cleaned = clean_labels(rows, TAXONOMY, min_confidence=0.3, min_answer_agreement=0.6).set_index("text")
    assert cleaned["status"].to_dict() == {"son heung-min goals": "kept", "split": "answer-disagreement",
                                           "naver": "prompt-disagreement"}
    assert cleaned.at["son heung-min goals", "intent"] == "interest" and cleaned.at["son heung-min goals", "tags"] == ("sports/soccer",)


def test_tags_on_a_utility_query_cost_precision():
    gold = [GoldQuery("볼리비아 비자", "utility", (), "utility-with-place"),
            GoldQuery("축구", "interest", ("sports/soccer",), "short")]
    perfect = score_tagger(lambda t: ("interest", ("sports/soccer",)) if t == "축구" else ("utility", ()), gold)
    naive = score_tagger(lambda t: ("interest", ("sports/soccer",) if t == "축구" else ("travel/south-america",)), gold)
    assert perfect["tag_f1"] == 1.0 and perfect["intent_accuracy"] == 1.0
    assert naive["tag_precision"] == 0.5 and naive["intent_accuracy"] == 0.5
    assert naive["by_case"]["utility-with-place"]["tag_precision"] == 0.0


def test_held_out_is_stable_and_close_to_its_share():
    texts = [f"query {i}" for i in range(5000)]
    share = np.mean([held_out(t, 0.1) for t in texts])
    assert 0.08 < share < 0.12 and held_out("축구", 0.1) == held_out("축구", 0.1)


def test_character_ngrams_survive_typos_and_particles():
    assert len(set(text_features("socer")) & set(text_features("soccer"))) >= 5
    assert {"<축", "<축구"} <= set(text_features("축구가"))


def test_cached_word_features_give_the_text_features_row():
    texts = ["Soccer highlights", "socer socer goals", "축구 하이라이트 손흥민", "ramen near gangnam", ""]
    vocabulary = Vocabulary.fit(texts[:2], min_count=1)
    for text in texts * 2:  # the second pass reads every word from the cache
        expected = {vocabulary.index[f] for f in text_features(text) if f in vocabulary.index}
        assert sorted(vocabulary.row(text)) == sorted(expected)
    assert vocabulary.row("soccer highlights") and not vocabulary.row("라멘")


TEXTS = {
    "interest": [(f"{form} {word}", ("sports/soccer",)) for form in ("soccer", "축구", "premier league", "손흥민")
                 for word in ("highlights", "goals", "하이라이트", "best plays", "")] +
                [(f"{form} {word}", ("sports/baseball",)) for form in ("baseball", "야구", "mlb", "오타니")
                 for word in ("highlights", "home runs", "하이라이트", "best plays", "")],
    "utility": [(f"{place} {cue}", ()) for place in ("peru", "페루", "paris", "파리", "tokyo")
                for cue in ("visa", "비자", "weather", "날씨")],
    "navigational": [(site, ()) for site in ("naver", "네이버", "youtube login", "gmail", "쿠팡", "instagram")],
}


@pytest.fixture(scope="module")
def student() -> QueryStudent:
    rows = [(text.strip(), intent, tags) for intent, items in TEXTS.items() for text, tags in items]
    texts, intents, tags = zip(*rows)
    return QueryStudent.fit(texts, intents, tags, min_count=1, l2=1e-6, threshold=0.4, max_tags=3)


def test_the_student_separates_siblings_and_tasks(student):
    assert student.predict("soccer highlights").tags == ("sports/soccer",)
    assert student.predict("야구 하이라이트").tags == ("sports/baseball",)
    assert student.predict("socer goals").tags == ("sports/soccer",)  # a typo it never saw
    assert student.predict("lima visa").intent.value == "utility" and student.predict("lima visa").tags == ()
    assert student.predict("네이버").intent.value == "navigational"


def test_a_saved_student_predicts_the_same_and_refuses_another_kind(student, tmp_path):
    path = student.save(tmp_path / "student.npz")
    loaded = QueryStudent.load(path)
    for text in ("soccer highlights", "오타니", "peru visa", "gmail"):
        assert loaded.predict(text) == student.predict(text)
    with pytest.raises(ValueError, match="not a topic-classifier"):
        TopicClassifier.load(path)


def test_the_topic_classifier_walks_down_while_sure_and_stops_when_not(tmp_path):
    texts = [f"{f} {w}" for f in ("soccer", "축구") for w in ("goals", "match", "하이라이트")] + \
            [f"{f} {w}" for f in ("baseball", "야구") for w in ("home run", "pitch", "하이라이트")] + \
            [f"{f} {w}" for f in ("kpop", "케이팝") for w in ("stage", "dance", "무대")]
    paths = ["sports/soccer"] * 6 + ["sports/baseball"] * 6 + ["music/kpop"] * 6
    sure = TopicClassifier.fit(texts, paths, min_count=1, l2=1e-6, min_confidence=0.5)
    assert sure.predict("축구 goals").path == "sports/soccer"
    assert sure.predict("kpop dance").path == "music/kpop"
    loaded = TopicClassifier.load(sure.save(tmp_path / "topics.npz"))
    assert loaded.predict("야구 pitch") == sure.predict("야구 pitch")
    assert sure.predict_clips(["축구", "kpop"], ["goals", None]) == ["sports/soccer", "music/kpop"]
    strict = TopicClassifier.fit(texts, paths, min_count=1, l2=1e-6, min_confidence=0.999999)
    assert strict.predict("하이라이트").path in ("", "sports")  # shared by siblings: not sure of the leaf


def test_the_query_pool_is_reproducible_and_varied():
    first, second = QueryPool(TAXONOMY, seed=5).write(500), QueryPool(TAXONOMY, seed=5).write(500)
    assert first == second and len(first) > 300
    assert any(" " not in q and not q.isascii() for q in first)
    assert typo(random.Random(0), "축구 하이라이트") == "축구하이라이트"
    assert typo(random.Random(0), "marathon") != "marathon"
