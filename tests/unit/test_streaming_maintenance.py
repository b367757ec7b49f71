"""Maintenance's one rule: expiry keeps every snapshot back to the newest one carrying the sink's offsets."""

import json

from hybridrec.contract import EVENTS
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run
from hybridrec.streaming.maintenance import snapshots_to_offsets
from hybridrec.streaming.sink import OFFSETS_PROPERTY


def test_depth_reaches_the_newest_snapshot_with_offsets(tmp_lake_settings):
    lake = Lake(tmp_lake_settings)
    run = new_run(tmp_lake_settings, "t")
    lake.append(EVENTS, [EVENTS.empty_arrow()], run)
    assert snapshots_to_offsets(lake.table(EVENTS)) == 0
    lake.append(EVENTS, [EVENTS.empty_arrow()], run, {OFFSETS_PROPERTY: json.dumps({"t": {"0": 5}})})
    assert snapshots_to_offsets(lake.table(EVENTS)) == 1
    for _ in range(3):  # e.g. compactions, which carry no offsets
        lake.append(EVENTS, [EVENTS.empty_arrow()], run)
    assert snapshots_to_offsets(lake.table(EVENTS)) == 4
