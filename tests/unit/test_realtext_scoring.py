"""The real-text benchmark's scoring: keyword matching, P/R/F1, and whether confidence means anything."""

from __future__ import annotations

import pytest

from hybridrec.bench.realtext import calibration, keyword_matches, prf


def test_keywords_match_when_one_holds_the_other_and_is_at_least_half_as_long():
    assert keyword_matches("Pork Belly!", "pork belly")
    assert keyword_matches("the carbonara", "carbonara")
    assert not keyword_matches("pasta", "carbonara pasta with guanciale")


def test_prf_of_nothing_is_zero_not_an_error():
    assert prf(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert prf(1, 2, 4)["f1"] == pytest.approx(1 / 3, abs=1e-4)


def test_a_reader_right_as_often_as_it_says_is_calibrated_and_an_overconfident_one_is_not():
    honest = [(0.9, True)] * 9 + [(0.9, False)] + [(0.3, True)] * 3 + [(0.3, False)] * 7
    assert calibration(honest)["ece"] == pytest.approx(0.0, abs=1e-6)
    overconfident = [(1.0, True)] * 5 + [(1.0, False)] * 5 + [(0.1, False)]
    report = calibration(overconfident)
    assert report["ece"] == pytest.approx((10 * 0.5 + 0.1) / 11, abs=1e-4) and report["bins"][-1] == {
        "confidence": "0.8-1.0", "queries": 10, "accuracy": 0.5, "mean_confidence": 1.0}
    assert calibration([])["ece"] is None and calibration([(1.0, True), (1.0, False)])["ece"] is None
