"""The streaming benchmark's end-to-end ingest: when the lake first held everything produced (the
benchmark itself needs Kafka and a sink process)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from hybridrec.bench import streaming as bench


def _lineage(*commits):
    """offsets_lineage's answer, newest first: (snapshot with timestamp_ms, offsets property or None)."""
    return lambda table: iter([(SimpleNamespace(timestamp_ms=ms), None if offsets is None else json.dumps(offsets))
                               for ms, offsets in commits])


@pytest.mark.parametrize("commits, expected", [
    # newest first; the oldest commit that covers both partitions is at 3 s
    ([(4000, {"ev": {"0": 9, "1": 7}}), (3000, {"ev": {"0": 8, "1": 5}}), (2000, {"ev": {"0": 8, "1": 4}})], 3.0),
    ([(4000, {"ev": {"0": 8, "1": 5}}), (3500, None), (3000, {"ev": {"0": 8, "1": 5}})], 3.0),  # e.g. a compaction
    ([(4000, {"ev": {"0": 8}, "other": {"1": 99}})], None),  # partition 1 of this topic not reached yet
    ([], None),
])
def test_the_first_commit_covering_the_produced_offsets(monkeypatch, commits, expected):
    monkeypatch.setattr(bench, "offsets_lineage", _lineage(*commits))
    assert bench.first_commit_covering(object(), "ev", {0: 8, 1: 5}) == expected
