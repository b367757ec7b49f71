"""`hybridrec experiments`: engagement per feed-experiment variant, from the events in the lake.

Impressions are ``view`` events; engagement is any of :data:`ENGAGED` (the positive event types).
Per surface, each variant's engagement rate (engaged / views) is compared with the control arm's by
a two-proportion z-test, so a reader can tell a real difference from noise before acting on it.
Serving stamps every event with the user's variant (:mod:`hybridrec.serving.writes`), so events
without one predate the experiment; they are reported as ``(none)`` and never tested.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue, GreaterThanOrEqual

from hybridrec.config import Settings
from hybridrec.contract import EVENTS
from hybridrec.lake import Lake

ENGAGED = ("click", "dwell", "like", "save", "share", "visit")
NO_VARIANT = "(none)"


@dataclass(frozen=True)
class ArmResult:
    surface: str
    variant: str
    views: int
    engaged: int
    rate: float | None
    lift: float | None = None     # relative to the control arm's rate
    z: float | None = None
    p_value: float | None = None  # two-sided
    note: str = ""


def two_proportion_z(successes: int, trials: int, control_successes: int, control_trials: int) -> tuple[float, float]:
    """(z, two-sided p) of H0: both arms have the same rate, with the pooled standard error."""
    pooled = (successes + control_successes) / (trials + control_trials)
    se = math.sqrt(pooled * (1 - pooled) * (1 / trials + 1 / control_trials))
    if se == 0:
        return 0.0, 1.0
    z = (successes / trials - control_successes / control_trials) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def counts(events: pa.Table) -> pd.DataFrame:
    """views and engaged per (surface, variant) of an events table (columns surface, event_type, experiment_variant)."""
    variant = pc.fill_null(events["experiment_variant"], NO_VARIANT)
    kinds = events["event_type"]
    frame = pa.table({
        "surface": events["surface"], "variant": variant,
        "views": pc.cast(pc.equal(kinds, "view"), pa.int64()),
        "engaged": pc.cast(pc.is_in(kinds, value_set=pa.array(ENGAGED)), pa.int64()),
    })
    summed = frame.group_by(["surface", "variant"]).aggregate([("views", "sum"), ("engaged", "sum")])
    return summed.to_pandas().rename(columns={"views_sum": "views", "engaged_sum": "engaged"})


def compare(table: pd.DataFrame, control: str) -> list[ArmResult]:
    """Each arm's rate, and its test against ``control`` on the same surface."""
    results = []
    for surface, arms in table.groupby("surface", sort=True):
        by_variant = {row.variant: (int(row.views), int(row.engaged)) for row in arms.itertuples()}
        base = by_variant.get(control)
        for variant, (views, engaged) in sorted(by_variant.items()):
            arm = ArmResult(surface, variant, views, engaged, engaged / views if views else None)
            if variant in (control, NO_VARIANT):
                results.append(arm)
            elif base is None or not base[0] or not views:
                results.append(ArmResult(**{**asdict(arm), "note": f"no views for this arm or {control!r}"}))
            elif engaged > views or base[1] > base[0]:
                results.append(ArmResult(**{**asdict(arm), "note": "more engagements than views: not a proportion"}))
            else:
                z, p = two_proportion_z(engaged, views, base[1], base[0])
                lift = arm.rate / (base[1] / base[0]) - 1 if base[1] else None
                results.append(ArmResult(**{**asdict(arm), "lift": lift, "z": z, "p_value": p}))
    return results


def experiment_report(settings: Settings, days: int | None = None) -> dict:
    """The report over ``raw.events`` (the last ``days`` days, or all); control = the first configured variant."""
    row_filter = AlwaysTrue()
    if days is not None:
        since = datetime.now(timezone.utc) - timedelta(days=days)
        row_filter = GreaterThanOrEqual("ts", since.isoformat())
    events = Lake(settings).scan(EVENTS, row_filter=row_filter, columns=("surface", "event_type", "experiment_variant"))
    control = settings.serving.experiments[0].name
    return {"experiment": settings.serving.experiment_name, "control": control, "days": days,
            "events": events.num_rows, "arms": [asdict(r) for r in compare(counts(events), control)]}


def format_report(report: dict) -> str:
    """The report as a table for people."""
    lines = [f"experiment {report['experiment']} (control {report['control']}), {report['events']:,} events"
             + (f" of the last {report['days']} days" if report["days"] else ""),
             f"{'surface':<7} {'variant':<16} {'views':>9} {'engaged':>9} {'rate':>7} {'lift':>7} {'z':>6} {'p':>7}"]

    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for arm in report["arms"]:
        lines.append(f"{arm['surface']:<7} {arm['variant']:<16} {arm['views']:>9,} {arm['engaged']:>9,} "
                     f"{num(arm['rate'], '.4f'):>7} {num(arm['lift'], '+.1%'):>7} {num(arm['z'], '.2f'):>6} "
                     f"{num(arm['p_value'], '.4f'):>7} {arm['note']}".rstrip())
    return "\n".join(lines)
