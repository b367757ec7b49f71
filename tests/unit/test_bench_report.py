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


def test_the_streaming_table_keeps_ingest_apart_from_the_backlog_drain():
    from hybridrec.bench.report import TABLES

    result = {"freshness_load_messages_per_s": 1000.0, "freshness_load_achieved_messages_per_s": 1000,
              "freshness_p50_s": 0.05, "freshness_p95_s": 0.2, "freshness_p99_s": 0.3, "target_freshness_p95_s": 1.0,
              "target_events_per_s": 5000, "ingest_messages": 280758, "ingest_producer_messages_per_s": 5100,
              "ingest_end_to_end_s": 61.2, "ingest_end_to_end_messages_per_s": 4588, "backlog_messages": 280758,
              "backlog_producer_alone_messages_per_s": 5689, "backlog_drain_sink_messages_per_s": 19592,
              "backlog_drain_sink_s": 14.3, "backlog_drain_context_messages_per_s": 8776,
              "backlog_drain_context_s": 32.0, "backlog_drain_context_2_members_messages_per_s": 13401,
              "backlog_drain_context_2_members_s": 20.9}
    rows = TABLES["streaming"][1](result).splitlines()
    assert any(r.startswith("| ingest, end to end") and "4,588 msg/s" in r and "≥ 5,000" in r for r in rows), rows
    assert any(r.startswith("| backlog drain (already in Kafka) into Iceberg") and "19,592 msg/s" in r
               and r.endswith("| |") for r in rows), rows  # a drain is no ingest rate: no target beside it
    assert any(r.startswith("| backlog drain into user contexts, 2 updaters") and "13,401" in r for r in rows), rows


def test_every_committed_result_carries_its_provenance():
    """Issue 16: commit, config hash, dataset identity and measured machine facts in every results file."""
    import json

    from hybridrec.config import PROJECT_ROOT

    for path in sorted((PROJECT_ROOT / "benchmarks" / "results").glob("*.json")):
        result = json.loads(path.read_text())
        prov = result.get("provenance") or {}
        assert prov.get("git_commit") and prov.get("config_hash") and prov.get("cpu_model"), path.name
        assert prov.get("load_average_end") and result.get("machine") and result.get("dataset"), path.name
