"""`hybridrec bench first-feed`: the load flags reach the benchmark, and a loaded run records both variants
with their load averages (the measurement itself needs a server and a published world: run by hand)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hybridrec.bench import first_feed
from hybridrec.cli import cli


@pytest.fixture
def calls(monkeypatch, tmp_path) -> list[tuple]:
    """run_benchmark replaced by a recorder; results into a temporary folder."""
    seen: list[tuple] = []
    monkeypatch.setattr(first_feed, "run_benchmark", lambda settings, feeds, publish, load_rate: seen.append(
        (feeds, publish, load_rate)) or {})
    monkeypatch.setenv("HYBRIDREC_BENCH_RESULTS", str(tmp_path))
    return seen


@pytest.mark.parametrize("args, expected", [
    ([], (20, False, None)),
    (["--publish"], (20, True, None)),
    (["--under-load"], (20, False, first_feed.LOAD_RATE)),
    (["--under-load", "--load-rate", "20"], (20, False, 20.0)),
    (["--load-rate", "12.5", "--feeds", "5", "--publish"], (5, True, 12.5)),  # a rate implies the loaded run
])
def test_the_load_flags_reach_the_benchmark(calls, args, expected):
    result = CliRunner().invoke(cli, ["bench", "first-feed", *args])
    assert result.exit_code == 0, result.output
    assert calls == [expected]


@pytest.mark.parametrize("rate, message", [("0", "0.0 is not in the range 0<x<=10000"),
                                           ("abc", "'abc' is not a valid float"),
                                           ("1e9", "is not in the range 0<x<=10000")])
def test_a_bad_load_rate_is_one_line_and_runs_nothing(calls, rate, message):
    result = CliRunner().invoke(cli, ["bench", "first-feed", "--under-load", "--load-rate", rate])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error:")] == [
        next(line for line in result.output.splitlines() if message in line)]
    assert calls == []


def test_a_loaded_run_records_both_variants_with_their_load(monkeypatch, tmp_path):
    from hybridrec.config import load_settings

    measured = []

    def fake_measure(settings, env, port, users, feeds, publish, load_rate):
        measured.append(load_rate)
        return {"added_load": None if load_rate is None else {"feeds_per_s": load_rate},
                "load_average": {"at_start": [1.0, 1.0, 1.0]}, "after_start": {"feeds": feeds}}

    monkeypatch.setattr(first_feed, "_measure", fake_measure)
    monkeypatch.setattr(first_feed, "_users", lambda settings, count=50: ["u1"])
    monkeypatch.setenv("HYBRIDREC_BENCH_RESULTS", str(tmp_path))
    first_feed.run_benchmark(load_settings(), feeds=3, publish=True, load_rate=30.0)

    result = json.loads((tmp_path / "first_feed.json").read_text())
    assert measured == [None, 30.0]  # the machine as found first, then under the added load
    assert result["machine_as_found"]["added_load"] is None
    assert result["under_load"]["added_load"] == {"feeds_per_s": 30.0}
    assert result["command"] == "hybridrec bench first-feed --publish --under-load --load-rate 30"
    assert result["dataset"].startswith("synthetic seed=")
    assert {"git_commit", "config_hash", "load_average_start", "load_average_end"} <= set(result["provenance"])


def test_no_rate_is_no_load_and_a_generator_that_died_fails_the_measurement(tmp_path):
    import subprocess
    import sys

    idle = first_feed._Load(1, None, tmp_path / "users.json", {}, tmp_path / "load.log")
    idle.start()
    idle.stop()
    assert idle.process is None
    died = first_feed._Load(1, 50.0, tmp_path / "users.json", {}, tmp_path / "load.log")
    (tmp_path / "load.log").write_text("ConnectionRefusedError: the server went away")
    died.process = subprocess.Popen([sys.executable, "-c", "pass"])
    died.process.wait()
    with pytest.raises(RuntimeError, match="exited early: ConnectionRefusedError"):
        died.stop()
