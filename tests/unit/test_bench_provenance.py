"""Benchmark provenance: the code state a result records, measured from a real git checkout."""

from __future__ import annotations

import subprocess

from hybridrec import benchmarks


def _git(repo, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_a_new_results_file_is_not_a_code_change_but_an_edited_module_is(tmp_path, monkeypatch):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "serving.json").write_text("{}\n")
    (tmp_path / "module.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "start")
    monkeypatch.setattr(benchmarks, "PROJECT_ROOT", tmp_path)

    clean = benchmarks.code_state()
    assert len(clean["git_commit"]) == 40 and clean["git_dirty"] is False
    (tmp_path / "benchmarks" / "results" / "serving.json").write_text('{"p99_ms": 1}\n')  # an earlier run's result
    assert benchmarks.code_state()["git_dirty"] is False
    (tmp_path / "module.py").write_text("x = 2\n")
    assert benchmarks.code_state() == {"git_commit": clean["git_commit"], "git_dirty": True}
