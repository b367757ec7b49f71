"""`hybridrec experiments`: engagement per feed-experiment variant, from the events in the lake.

Impressions are ``view`` events; engagement is any of :data:`ENGAGED` (the positive event types).
Users, not views, are the unit of randomisation: one user's views are correlated, so a test that
treated each view as an independent trial would understate the standard error. Each arm's
engagement rate is a ratio of per-user sums (engaged / views), its variance taken by the delta
method over users, and each variant is compared with the control arm by a z-test on those
variances. A sample-ratio-mismatch check (chi-square of users per arm against the configured
weights) flags a broken split before anyone reads a lift. Serving stamps every event with the
user's variant (:mod:`hybridrec.serving.writes`), so events without one predate the experiment;
they are reported as ``(none)`` and never tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue, GreaterThanOrEqual
from scipy import stats

from hybridrec.config import Settings
from hybridrec.contract import EVENTS
from hybridrec.lake import Lake

ENGAGED = ("click", "dwell", "like", "save", "share", "visit")
NO_VARIANT = "(none)"
SRM_ALPHA = 0.001  # the usual threshold: a split this unlikely under the configured weights is broken


@dataclass(frozen=True)
class ArmResult:
    surface: str
    variant: str
    users: int
    views: int
    engaged: int
    rate: float | None
    lift: float | None = None     # relative to the control arm's rate
    z: float | None = None
    p_value: float | None = None  # two-sided, users as the unit (delta method)
    note: str = ""


@dataclass(frozen=True)
class RatioEstimate:
    rate: float
    variance: float  # of the rate, by the delta method over users


def ratio_estimate(engaged: np.ndarray, views: np.ndarray) -> RatioEstimate:
    """sum(engaged) / sum(views) over users, and its delta-method variance:
    Var(Y/X) ~ (s_y^2 - 2 R s_xy + R^2 s_x^2) / (n mean_x^2)."""
    n = len(views)
    mean_x, mean_y = views.mean(), engaged.mean()
    rate = mean_y / mean_x
    if n < 2:
        return RatioEstimate(float(rate), math.inf)
    cov = np.cov(np.vstack([engaged, views]).astype(np.float64), ddof=1)
    variance = (cov[0, 0] - 2 * rate * cov[0, 1] + rate ** 2 * cov[1, 1]) / (n * mean_x ** 2)
    return RatioEstimate(float(rate), float(max(variance, 0.0)))


def ratio_z(arm: RatioEstimate, control: RatioEstimate) -> tuple[float, float]:
    """(z, two-sided p) of H0: both arms have the same rate."""
    se, difference = math.sqrt(arm.variance + control.variance), arm.rate - control.rate
    if math.isinf(se) or difference == 0:  # too few users to know the variance, or no difference at all
        return 0.0, 1.0
    if se == 0:  # every user of both arms alike: the difference is certain
        return math.copysign(math.inf, difference), 0.0
    z = difference / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def per_user(events: pa.Table) -> pd.DataFrame:
    """views and engaged per (surface, variant, user) of an events table (columns user_id, surface,
    event_type, experiment_variant)."""
    kinds = events["event_type"]
    frame = pa.table({
        "surface": events["surface"], "variant": pc.fill_null(events["experiment_variant"], NO_VARIANT),
        "user_id": events["user_id"],
        "views": pc.cast(pc.equal(kinds, "view"), pa.int64()),
        "engaged": pc.cast(pc.is_in(kinds, value_set=pa.array(ENGAGED)), pa.int64()),
    })
    summed = frame.group_by(["surface", "variant", "user_id"]).aggregate([("views", "sum"), ("engaged", "sum")])
    return summed.to_pandas().rename(columns={"views_sum": "views", "engaged_sum": "engaged"})


def compare(users: pd.DataFrame, control: str) -> list[ArmResult]:
    """Each arm's rate, and its test against ``control`` on the same surface; only users with views count
    towards a rate (an arm's engagement without views is not a proportion)."""
    results = []
    for surface, arms in users.groupby("surface", sort=True):
        by_variant = {variant: rows for variant, rows in arms.groupby("variant", sort=True)}
        base_rows = by_variant.get(control)
        base_rows = base_rows[base_rows["views"] > 0] if base_rows is not None else None
        base = (ratio_estimate(base_rows["engaged"].to_numpy(), base_rows["views"].to_numpy())
                if base_rows is not None and len(base_rows) else None)
        for variant, rows in by_variant.items():
            views, engaged = int(rows["views"].sum()), int(rows["engaged"].sum())
            seen = rows[rows["views"] > 0]
            arm = ArmResult(surface, variant, len(rows), views, engaged, engaged / views if views else None)
            if variant in (control, NO_VARIANT):
                results.append(arm)
            elif base is None or not len(seen):
                results.append(ArmResult(**{**asdict(arm), "note": f"no views for this arm or {control!r}"}))
            else:
                estimate = ratio_estimate(seen["engaged"].to_numpy(), seen["views"].to_numpy())
                z, p = ratio_z(estimate, base)
                lift = estimate.rate / base.rate - 1 if base.rate else None
                results.append(ArmResult(**{**asdict(arm), "lift": lift, "z": z, "p_value": p}))
    return results


def sample_ratio(users: pd.DataFrame, weights: Mapping[str, float]) -> dict:
    """Chi-square test of the distinct users per configured variant against the configured weights;
    ``mismatch`` when p < :data:`SRM_ALPHA`. Users of unconfigured variants are counted apart."""
    distinct = users.drop_duplicates("user_id") if "user_id" in users else users
    observed = {v: int((distinct["variant"] == v).sum()) for v in weights}
    total = sum(observed.values())
    out = {"users": observed, "unconfigured_users": int((~distinct["variant"].isin(list(weights))).sum())}
    if len(weights) < 2 or total == 0:
        return {**out, "chi2": None, "p_value": None, "mismatch": False}
    weight_sum = sum(weights.values())
    expected = [total * w / weight_sum for w in weights.values()]
    chi2, p = stats.chisquare(list(observed.values()), expected)
    return {**out, "chi2": round(float(chi2), 4), "p_value": float(p), "mismatch": bool(p < SRM_ALPHA)}


def experiment_report(settings: Settings, days: int | None = None) -> dict:
    """The report over ``raw.events`` (the last ``days`` days, or all); control = the first configured variant."""
    row_filter = AlwaysTrue()
    if days is not None:
        since = datetime.now(timezone.utc) - timedelta(days=days)
        row_filter = GreaterThanOrEqual("ts", since.isoformat())
    events = Lake(settings).scan(EVENTS, row_filter=row_filter,
                                 columns=("user_id", "surface", "event_type", "experiment_variant"))
    variants = settings.serving.experiments
    users = per_user(events)
    return {"experiment": settings.serving.experiment_name, "control": variants[0].name, "days": days,
            "events": events.num_rows, "arms": [asdict(r) for r in compare(users, variants[0].name)],
            "sample_ratio": sample_ratio(users, {v.name: v.weight for v in variants})}


def format_report(report: dict) -> str:
    """The report as a table for people."""
    lines = [f"experiment {report['experiment']} (control {report['control']}), {report['events']:,} events"
             + (f" of the last {report['days']} days" if report["days"] else ""),
             f"{'surface':<7} {'variant':<16} {'users':>7} {'views':>9} {'engaged':>9} {'rate':>7} {'lift':>7} "
             f"{'z':>6} {'p':>7}"]

    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for arm in report["arms"]:
        lines.append(f"{arm['surface']:<7} {arm['variant']:<16} {arm['users']:>7,} {arm['views']:>9,} "
                     f"{arm['engaged']:>9,} "
                     f"{num(arm['rate'], '.4f'):>7} {num(arm['lift'], '+.1%'):>7} {num(arm['z'], '.2f'):>6} "
                     f"{num(arm['p_value'], '.4f'):>7} {arm['note']}".rstrip())
    srm = report["sample_ratio"]
    if srm["p_value"] is not None:
        verdict = ("SAMPLE RATIO MISMATCH: the split is broken, do not read the lifts. " if srm["mismatch"]
                   else "sample ratio ok: ")
        lines.append(verdict + f"users per arm {srm['users']}, chi2 {srm['chi2']}, p {srm['p_value']:.4g}")
    return "\n".join(lines)
