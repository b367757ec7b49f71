"""README figure tables are generated from the committed results files."""

import json

import pytest

from hybridrec.bench.report import TABLES, render
from hybridrec.config import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
README = PROJECT_ROOT / "README.md"


def test_the_committed_readme_is_in_sync_with_the_committed_results():
    text = README.read_text()
    assert render(text, RESULTS) == text, "run `hybridrec bench report` and commit README.md"
    assert all(f"<!-- bench:{name} -->" in text for name in TABLES)  # every renderer has its block


def test_a_hand_edited_figure_is_overwritten_from_the_file(tmp_path):
    (tmp_path / "distill-gold.json").write_text((RESULTS / "distill-gold.json").read_text())
    block = render("<!-- bench:distill -->\n<!-- /bench:distill -->", tmp_path)
    edited = block.replace("| gold intent accuracy |", "| gold intent accuracy (edited) |")
    assert edited != block and render(edited, tmp_path) == block
    result = json.loads((RESULTS / "distill-gold.json").read_text())
    assert f"{result['student/tag_f1']:.3f}" in block and "distill-gold.json" in block


@pytest.mark.parametrize("text, message", [
    ("<!-- bench:nosuch -->\nx\n<!-- /bench:nosuch -->", "has no renderer"),
    ("<!-- bench:distill -->\nx\n", "without their closing"),
    ("<!-- bench:retrain -->\n<!-- /bench:retrain -->", "does not exist"),
])
def test_broken_blocks_are_refused(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        render(text, tmp_path)


def test_the_cli_check_passes_on_the_committed_tree():
    from click.testing import CliRunner

    from hybridrec.cli import cli

    result = CliRunner().invoke(cli, ["bench", "report", "--check"], env={"HYBRIDREC_BENCH_RESULTS": str(RESULTS)})
    assert result.exit_code == 0 and "in sync" in result.output
