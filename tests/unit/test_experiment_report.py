"""The experiment report: users as the unit (delta method), the SRM check, and the report on a throwaway lake."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from hybridrec.batch.experiment_report import experiment_report, format_report, ratio_estimate, ratio_z, sample_ratio
from hybridrec.config import ExperimentVariant
from hybridrec.contract import EVENTS
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run

NOW = datetime.now(timezone.utc)


def test_with_one_view_per_user_the_delta_method_is_the_binomial_variance():
    engaged = np.array([1] * 30 + [0] * 70)
    estimate = ratio_estimate(engaged, np.ones(100))
    assert estimate.rate == pytest.approx(0.3)
    assert estimate.variance == pytest.approx(0.3 * 0.7 / 99)  # p(1-p)/(n-1): the sample variance over users


def test_correlated_views_of_one_user_widen_the_standard_error():
    rng = np.random.default_rng(1)
    views = rng.integers(1, 40, size=200)
    engaged = np.where(rng.random(200) < 0.3, views, 0)  # a user engages with all of their views or none
    estimate = ratio_estimate(engaged, views)
    naive = estimate.rate * (1 - estimate.rate) / views.sum()  # every view an independent trial
    assert estimate.variance > 10 * naive


def test_z_of_two_arms_and_of_a_degenerate_one():
    a, b = ratio_estimate(np.array([1] * 150 + [0] * 850), np.ones(1000)), ratio_estimate(
        np.array([1] * 100 + [0] * 900), np.ones(1000))
    z, p = ratio_z(a, b)
    assert z == pytest.approx(3.38, abs=0.05) and p < 0.001
    assert ratio_z(ratio_estimate(np.array([1]), np.array([1])), b) == (0.0, 1.0)  # one user: no variance known
    same = ratio_estimate(np.array([1, 1]), np.array([2, 2]))
    assert ratio_z(same, ratio_estimate(np.array([2, 2]), np.array([2, 2]))) == (-np.inf, 0.0)  # alike users


@pytest.mark.parametrize("control, treatment, mismatch", [(1000, 800, True), (505, 495, False)])
def test_sample_ratio_mismatch_is_flagged(control, treatment, mismatch):
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(control + treatment)],
                          "variant": ["control"] * control + ["treatment"] * treatment})
    srm = sample_ratio(users, {"control": 1.0, "treatment": 1.0})
    assert srm["mismatch"] is mismatch and srm["users"] == {"control": control, "treatment": treatment}


def _events(user: str, surface: str, variant: str | None, views: int, engaged: int, age_days: float = 0.5):
    kinds = ["view"] * views + ["like"] * (engaged // 2) + ["click"] * (engaged - engaged // 2) + ["skip"]
    return [(user, surface, variant, kind, NOW - timedelta(days=age_days)) for kind in kinds]


@pytest.fixture
def report_settings(tmp_lake_settings):
    rows = []
    for i in range(200):  # 100 users per arm, 10 clip views each: control engages 1 in 10, treatment 2 in 10
        variant = "control" if i % 2 else "treatment"
        rows += _events(f"user-{i}", "clip", variant, 10, (i // 2) % 3 if variant == "control" else (i // 2) % 5)
        rows += _events(f"user-{i}", "place", variant, 2, i % 3 == 0)
    rows += _events("old-user", "clip", None, 10, 5) + _events("old-user", "clip", "treatment", 50, 50, age_days=30)
    settings = tmp_lake_settings.model_copy(update={"serving": tmp_lake_settings.serving.model_copy(update={
        "experiments": [ExperimentVariant(name="control"), ExperimentVariant(name="treatment")]})})
    Lake(settings).replace(EVENTS, [EVENTS.to_arrow({
        "event_id": [f"e{i}" for i in range(len(rows))], "user_id": [r[0] for r in rows],
        "surface": [r[1] for r in rows], "experiment_variant": [r[2] for r in rows],
        "event_type": [r[3] for r in rows], "ts": [r[4] for r in rows]})], new_run(settings, "test"))
    return settings


def test_report_per_surface_and_variant_with_users_as_the_unit(report_settings):
    report = experiment_report(report_settings, days=7)
    arms = {(a["surface"], a["variant"]): a for a in report["arms"]}
    clip = arms[("clip", "treatment")]
    assert (clip["users"], clip["views"], clip["engaged"], clip["rate"]) == (100, 1000, 200, 0.2)  # skips are neither
    assert arms[("clip", "control")]["rate"] == pytest.approx(0.099)
    assert clip["lift"] == pytest.approx(0.2 / 0.099 - 1) and clip["p_value"] < 0.001
    assert arms[("place", "treatment")]["p_value"] > 0.05  # the same share of engaged users in both: noise
    assert arms[("clip", "control")]["z"] is None and arms[("clip", "(none)")]["z"] is None
    assert report["sample_ratio"]["mismatch"] is False and report["sample_ratio"]["unconfigured_users"] == 1
    text = format_report(report)
    assert "clip    treatment" in text and "sample ratio ok" in text


def test_report_window_covers_all_days_when_unbounded(report_settings):
    arms = {(a["surface"], a["variant"]): a for a in experiment_report(report_settings)["arms"]}
    assert (arms[("clip", "treatment")]["views"], arms[("clip", "treatment")]["engaged"]) == (1050, 250)
