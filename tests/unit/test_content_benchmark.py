"""The content ablation's comparison: paired gaps per segment over the users every mode held out."""

from __future__ import annotations

import pandas as pd
import pytest

from hybridrec.bench.content import _compare


def _mode(ndcg: list[float]) -> tuple[pd.DataFrame, pd.Series]:
    users = [f"u{i}" for i in range(len(ndcg))]
    frame = pd.DataFrame({"recall@20": ndcg, "ndcg@20": ndcg}, index=users)
    return frame, pd.Series(["light" if i % 2 else "heavy" for i in range(len(ndcg))], index=users)


def test_gaps_are_paired_per_user_and_split_by_segment():
    none, extracted, truth = _mode([0.1] * 40), _mode([0.2] * 40), _mode([0.2] * 20 + [0.4] * 20)
    result = _compare({"none": none, "extracted": extracted, "truth_tags": truth}, bootstrap_samples=200)
    assert result["all"]["users"] == 40 and result["all"]["ranker"]["extracted"]["ndcg@20"] == pytest.approx(0.2)
    gain = result["all"]["extracted_minus_none"]["ndcg@20"]
    assert gain["mean"] == pytest.approx(0.1) and gain["low"] == pytest.approx(0.1)  # the same gain for every user
    gap = result["all"]["truth_minus_extracted"]["ndcg@20"]
    assert gap["mean"] == pytest.approx(0.1) and gap["low"] < 0.1 < gap["high"]  # half the users gain 0.2
    assert result["light"]["users"] == result["heavy"]["users"] == 20 and "new" not in result
