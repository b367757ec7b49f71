"""The experiment report on a tiny events table in a throwaway lake (no services needed)."""

from datetime import datetime, timedelta, timezone

import pytest

from hybridrec.batch.experiment_report import experiment_report, format_report, two_proportion_z
from hybridrec.contract import EVENTS
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run

NOW = datetime.now(timezone.utc)


def _rows(surface: str, variant: str | None, views: int, engaged: int, skips: int = 0, age_days: float = 0.5):
    kinds = ["view"] * views + ["like"] * (engaged // 2) + ["click"] * (engaged - engaged // 2) + ["skip"] * skips
    return [(surface, variant, kind, NOW - timedelta(days=age_days)) for kind in kinds]


@pytest.fixture
def report_settings(tmp_lake_settings):
    rows = (_rows("clip", "control", 1000, 100, skips=50) + _rows("clip", "treatment", 1000, 150)
            + _rows("place", "control", 200, 20) + _rows("place", "treatment", 200, 21)
            + _rows("clip", None, 10, 5) + _rows("place", "silent", 0, 3)
            + _rows("clip", "treatment", 500, 500, age_days=30))
    Lake(tmp_lake_settings).replace(EVENTS, [EVENTS.to_arrow({
        "event_id": [f"e{i}" for i in range(len(rows))], "user_id": [f"u{i % 7}" for i in range(len(rows))],
        "surface": [r[0] for r in rows], "experiment_variant": [r[1] for r in rows],
        "event_type": [r[2] for r in rows], "ts": [r[3] for r in rows]})], new_run(tmp_lake_settings, "test"))
    return tmp_lake_settings


def test_z_test_matches_the_textbook_value():
    z, p = two_proportion_z(150, 1000, 100, 1000)  # 15% vs 10%: pooled 12.5%, se 0.01479
    assert z == pytest.approx(3.3806, abs=1e-3) and p == pytest.approx(0.000723, abs=2e-5)
    assert two_proportion_z(0, 10, 0, 10) == (0.0, 1.0)


def test_report_counts_views_and_engagement_per_surface_and_variant(report_settings):
    report = experiment_report(report_settings, days=7)
    arms = {(a["surface"], a["variant"]): a for a in report["arms"]}
    assert report["control"] == "control" and report["events"] == 1000 + 100 + 50 + 1000 + 150 + 220 + 221 + 15 + 3
    clip = arms[("clip", "treatment")]
    assert (clip["views"], clip["engaged"], clip["rate"]) == (1000, 150, 0.15)  # skips are neither
    assert clip["lift"] == pytest.approx(0.5) and clip["p_value"] < 0.001
    assert arms[("place", "treatment")]["p_value"] > 0.5  # 10.5% vs 10% on 200 views: noise
    assert arms[("clip", "control")]["z"] is None and arms[("clip", "(none)")]["z"] is None
    assert "clip    treatment" in format_report(report)


def test_report_window_and_arms_that_cannot_be_tested(report_settings):
    arms = {(a["surface"], a["variant"]): a for a in experiment_report(report_settings)["arms"]}
    assert (arms[("clip", "treatment")]["views"], arms[("clip", "treatment")]["engaged"]) == (1500, 650)  # all days
    silent = arms[("place", "silent")]
    assert silent["rate"] is None and silent["z"] is None and "no views" in silent["note"]
