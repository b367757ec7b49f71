"""hybridrec works as an installed wheel, from outside the checkout: the console script, every command's
`--help`, and a benchmark end-to-end (its labelled sets come from the wheel, its results go to the current
folder). No services needed; integration only because it builds a wheel and a venv (about a minute).

Shortcut that keeps the test honest: the fresh venv gets the wheel with ``--no-deps`` and finds the
dependencies through a ``.pth`` path entry to the project venv's site-packages. A path entry does not run
that folder's own ``.pth`` files, so the project's editable install is not active in the new venv; the test
asserts that ``hybridrec`` (and ``hybridrec.bench``) are imported from the new venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from hybridrec.config import DEFAULT_CONFIG_FILE, PROJECT_ROOT

pytestmark = pytest.mark.integration

WALK_HELP = """
import sys, click
from click.testing import CliRunner
import hybridrec, hybridrec.bench
from hybridrec.cli import cli

def paths(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from paths(command, (*prefix, name))

failed = []
for path in paths(cli):
    result = CliRunner().invoke(cli, [*path, "--help"])
    if result.exit_code != 0 or not result.output.startswith("Usage: ") or "Traceback" in result.output:
        failed.append((path, result.exit_code, result.output[-300:]))
print({"hybridrec": hybridrec.__file__, "bench": hybridrec.bench.__file__, "commands": len(list(paths(cli))),
       "failed": failed})
"""


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out),
          str(PROJECT_ROOT)], cwd=out, env=dict(os.environ))
    (built,) = out.glob("hybridrec-*.whl")
    return built


def test_the_wheel_ships_the_benchmarks_and_their_datasets_but_not_results(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"hybridrec/bench/__init__.py", "hybridrec/bench/realtext.py", "hybridrec/bench/serving.py",
            "hybridrec/bench/streaming.py", "hybridrec/bench/gowalla.py", "hybridrec/bench/cold_start.py",
            "hybridrec/bench/distill.py", "hybridrec/bench/extraction.py",
            "hybridrec/bench/datasets/realtext/queries_ko.jsonl",
            "hybridrec/bench/datasets/redteam/injections.jsonl",
            "hybridrec/batch/data/review_pool.jsonl.gz"} <= names  # distill's review student learns from it
    assert not [n for n in names if "/results/" in n or n.startswith("tests/")]


def test_the_installed_wheel_runs_from_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=dict(os.environ))
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "project-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)],
         cwd=tmp_path, env=env)

    work = tmp_path / "work"  # outside the checkout: a config of its own, a home, results in the current folder
    work.mkdir()
    shutil.copy(DEFAULT_CONFIG_FILE, work / "hybridrec.yaml")
    env = {**env, "HYBRIDREC_CONFIG": str(work / "hybridrec.yaml"), "HYBRIDREC__HOME": str(work / "home")}
    hybridrec = venv / "bin" / "hybridrec"

    assert "Usage: hybridrec" in _run([str(hybridrec), "--help"], cwd=work, env=env).stdout
    walked = eval(_run([str(python), "-c", WALK_HELP], cwd=work, env=env).stdout.strip().splitlines()[-1])
    assert walked["hybridrec"].startswith(str(site)) and walked["bench"].startswith(str(site)), walked
    assert walked["commands"] > 30 and walked["failed"] == [], walked

    committed = PROJECT_ROOT / "benchmarks" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in committed.iterdir()}
    _run([str(hybridrec), "bench", "realtext", "--backends", "offline", "--limit", "2", "--no-redteam"],
         cwd=work, env=env)
    result = json.loads((work / "benchmark-results" / "realtext-validation.json").read_text())
    assert result["benchmark"] == "realtext" and result["provenance"]["config_hash"]
    assert result["reviews"] > 0 and result["queries"] > 0  # scored on the labelled sets shipped in the wheel
    assert {p.name: p.stat().st_mtime_ns for p in committed.iterdir()} == before  # the checkout is not written
