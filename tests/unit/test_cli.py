"""The command line: every `--help` works whatever the environment holds; bad input, a broken config and an
unreachable service each end in one line naming what is wrong (and, for a service, its log), never a
traceback; secrets are masked wherever they are printed or logged."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hybridrec.cli import cli
from hybridrec.logs import configure_logging, is_secret_name, mask_secrets

SECRET = "s3cr3t-value"


def _command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command of the CLI, found by walking the click groups."""
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, (*prefix, name)))
    return paths


def _closed_port() -> int:
    """A loopback port nothing listens on: bound by the OS for us, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _error_lines(output: str) -> list[str]:
    """Click's error line, or argparse's (``<prog>: error: ...``) for a benchmark's pass-through flags."""
    return [line for line in output.splitlines() if line.startswith("Error:") or ": error: " in line]


def _assert_one_line_error(result, exit_code: int, *expected: str) -> str:
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit)  # an exception of the command would be result.exception
    errors = _error_lines(result.output)
    assert len(errors) == 1, result.output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture(params=["bad-port", "missing-file", "bad-yaml"])
def broken_config_env(request, tmp_path) -> dict[str, str]:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("serving: [unclosed\n")
    return {"bad-port": {"HYBRIDREC__SERVING__PORT": "abc"},
            "missing-file": {"HYBRIDREC_CONFIG": str(tmp_path / "nowhere.yaml")},
            "bad-yaml": {"HYBRIDREC_CONFIG": str(bad_yaml)}}[request.param]


def test_the_walk_finds_every_command():
    paths = _command_paths()
    assert {("feed",), ("bench", "serving"), ("bench", "streaming"), ("stream", "show"), ("infra", "up")} <= set(paths)
    assert len(paths) > 30


def test_every_help_works_with_a_broken_config(broken_config_env):
    runner = CliRunner()
    env = {**broken_config_env, "HYBRIDREC_BENCH_RESULTS": __file__}  # a file where a folder should be
    for path in [(), *_command_paths()]:
        result = runner.invoke(cli, [*path, "--help"], env=env)
        assert result.exit_code == 0 and "Traceback" not in result.output, (path, result.output)
        assert result.output.startswith("Usage: "), (path, result.output)


def test_a_command_with_a_broken_config_is_a_one_line_error(broken_config_env):
    result = CliRunner().invoke(cli, ["config"], env=broken_config_env)
    _assert_one_line_error(result, 1, "invalid configuration")


def test_the_broken_setting_is_named():
    result = CliRunner().invoke(cli, ["feed", "u00001"], env={"HYBRIDREC__SERVING__PORT": "abc"})
    _assert_one_line_error(result, 1, "serving.port", "'abc'")


@pytest.mark.parametrize("args, message", [
    (["generate", "--events", "-5"], "-5 is not in the range x>=1"),
    (["generate", "--seed", "x"], "'x' is not a valid integer"),
    (["feed", "u-any", "--limit", "0"], "0 is not in the range x>=1"),
    (["feed", "u-any", "--limit", "101"], "101 is above serving.max_limit (100)"),
    (["feed", "u-any", "--surface", "song"], "'song' is not one of"),
    (["bench", "serving", "--rates", "50,abc"], "comma-separated numbers"),
    (["bench", "serving", "--rates", "50,-1"], "every rate must be a finite number above 0"),
    (["bench", "serving", "--rates", "nan"], "every rate must be a finite number above 0"),
    (["bench", "serving", "--seconds", "0"], "0.0 is not in the range x>0"),
    (["distill", "--llm-budget-texts", "-1"], "-1 is not in the range x>=0"),
    (["distill", "--llm-teacher", "gpt"], "'gpt' is not one of"),
    (["runs", "--limit", "0"], "0 is not in the range x>=1"),
    (["tables", "--sample", "-1"], "-1 is not in the range x>=0"),
    (["experiments", "--days", "0"], "0 is not in the range x>=1"),
    (["stream", "replay", "--rate", "-1"], "-1.0 is not in the range x>=0"),
    (["stream", "replay", "--limit", "0"], "0 is not in the range x>=1"),
    (["stream", "demo", "--seconds", "0"], "0.0 is not in the range x>0"),
    (["stream", "replay", "--events-table", "events"], "'events': namespace.table"),
    (["batch", "extract", "--max-chunks", "0"], "0 is not in the range x>=1"),
    (["stream", "show"], "Missing argument 'USER_ID'"),
    (["bench", "realtext", "--limit", "0"], "'0' must be a finite number above 0"),
    (["bench", "realtext", "--backends", "offline,bogus"], "--backends: unknown bogus"),
    (["bench", "realtext", "--split", "train"], "invalid choice: 'train'"),
    (["bench", "realtext", "--report", "/nonexistent/r.json"], "--report: "),
    (["bench", "streaming", "--events", "-5"], "'-5' must be a finite number above 0"),
    (["bench", "streaming", "--rate", "abc"], "invalid float value: 'abc'"),
    (["bench", "gowalla", "--data-dir", "/nonexistent"], "no train.txt or test.txt"),
    (["bench", "gowalla", "--set", "oops"], "--set expects MODEL.PARAM=VALUE"),
    (["bench", "retrain", "--bootstrap-samples", "10"], "10 is not in the range x>=100"),
    (["bench", "--results-dir", __file__, "retrain"], "is a file, not a folder"),
    (["bench", "--results-dir", __file__, "synthetic"], "is a file, not a folder"),
    (["bench", "--results-dir", __file__, "gowalla"], "is a file, not a folder"),
    (["no-such-verb"], "No such command 'no-such-verb'"),
])
def test_bad_arguments_are_refused_in_one_line(args, message):
    result = CliRunner().invoke(cli, args, env={"HYBRIDREC_BENCH_RESULTS": None})  # restored: --results-dir sets it
    _assert_one_line_error(result, 2, message)


def test_feed_limit_follows_the_servers_max_limit():
    result = CliRunner().invoke(cli, ["feed", "u-any", "--limit", "30"], env={"HYBRIDREC__SERVING__MAX_LIMIT": "20",
                                                                              "HYBRIDREC__SERVING__DEFAULT_LIMIT": "10"})
    _assert_one_line_error(result, 2, "30 is above serving.max_limit (20)")


@pytest.fixture
def services_down(tmp_path, monkeypatch) -> dict[str, str]:
    """Settings whose Kafka, OpenSearch and (REST) catalog are closed loopback ports, in a throwaway home."""
    from kafka import KafkaAdminClient, KafkaConsumer

    for client in (KafkaConsumer, KafkaAdminClient):  # the real client, failing in 1 s instead of 30 s
        monkeypatch.setitem(client.DEFAULT_CONFIG, "bootstrap_timeout_ms", 1000)
    ports = {name: str(_closed_port()) for name in ("KAFKA__PORT", "KAFKA__CONTROLLER_PORT", "OPENSEARCH__PORT",
                                                     "OPENSEARCH__TRANSPORT_PORT")}
    return {**{f"HYBRIDREC__{k}": v for k, v in ports.items()}, "HYBRIDREC__HOME": str(tmp_path / "home"),
            "HYBRIDREC__LAKE__URI": f"sqlite:///{tmp_path / 'catalog.db'}"}


@pytest.mark.parametrize("args, service, log", [
    (["rollback"], "(opensearch at http://127.0.0.1:", "services/logs/opensearch.log"),
    (["stream", "show", "u00001"], "(opensearch at http://127.0.0.1:", "services/logs/opensearch.log"),
    (["feed", "u00001", "--limit", "3"], "(opensearch at http://127.0.0.1:", "services/logs/opensearch.log"),
    (["stream", "sink", "--until-caught-up"], "(kafka at 127.0.0.1:", "services/logs/kafka.log"),
    (["stream", "context", "--until-caught-up"], "(kafka at 127.0.0.1:", "services/logs/kafka.log"),
])
def test_an_unreachable_service_is_one_line_naming_it_and_its_log(services_down, args, service, log):
    result = CliRunner().invoke(cli, args, env=services_down)
    line = _assert_one_line_error(result, 1, service, log)
    assert str(Path(services_down["HYBRIDREC__HOME"])) in line


@pytest.mark.parametrize("args", [["runs"], ["tables"], ["experiments"]])
def test_an_unreachable_catalog_is_one_line_without_its_password(services_down, args):
    env = {**services_down, "HYBRIDREC__LAKE__KIND": "rest",
           "HYBRIDREC__LAKE__URI": f"http://admin:{SECRET}@127.0.0.1:{_closed_port()}/catalog"}
    result = CliRunner().invoke(cli, args, env=env)
    _assert_one_line_error(result, 1, "the lake (catalog http://admin:***@127.0.0.1:", "is the catalog reachable")
    assert SECRET not in result.output


def test_a_missing_gowalla_split_is_one_line(services_down, tmp_path):
    result = CliRunner().invoke(cli, ["load-gowalla", "--data-dir", str(tmp_path)], env=services_down)
    _assert_one_line_error(result, 1, "Gowalla train split not found")


def test_a_failure_drill_at_no_such_step_is_refused_before_anything_runs(services_down):
    result = CliRunner().invoke(cli, ["retrain", "--fail-at", "pubilsh"], env=services_down)
    _assert_one_line_error(result, 2, "'pubilsh' is no step of the retrain; steps: snapshot-inputs, ")
    runs = CliRunner().invoke(cli, ["runs"], env=services_down)
    # judged by the last line: a log line of another test's client thread may come first in a shared process
    assert runs.output.splitlines()[-1].startswith("no runs recorded yet"), runs.output  # not even a failed run


def test_a_missing_precondition_is_one_line(services_down):
    result = CliRunner().invoke(cli, ["distill"], env=services_down)
    _assert_one_line_error(result, 1, "derived.query_tags is missing", "hybridrec batch extract")


def test_a_service_error_with_a_log_tail_is_its_first_line(services_down, monkeypatch):
    from hybridrec.infra import manager
    from hybridrec.infra.services import ServiceError

    def broken(settings):
        raise ServiceError("kafka (pid 7) exited during start-up; log /x/kafka.log:\nline one\nline two")

    monkeypatch.setattr(manager, "up", broken)
    result = CliRunner().invoke(cli, ["infra", "up"], env=services_down)
    _assert_one_line_error(result, 1, "kafka (pid 7) exited during start-up; log /x/kafka.log:")
    assert "line one" not in result.output


def test_a_bug_keeps_its_traceback(services_down, monkeypatch):
    import hybridrec.registry

    def buggy(lake):
        return {}["no such key"]

    monkeypatch.setattr(hybridrec.registry, "run_history", buggy)
    result = CliRunner().invoke(cli, ["runs"], env=services_down)
    assert isinstance(result.exception, KeyError) and result.exit_code == 1


def test_runs_on_an_empty_lake_says_so(services_down):
    result = CliRunner().invoke(cli, ["runs"], env=services_down)
    # the last line: a Kafka client left by an earlier test of this process may log an error before it
    assert result.exit_code == 0 and result.output.splitlines()[-1].startswith("no runs recorded yet"), result.output


def test_the_config_masks_every_secret():
    env = {"HYBRIDREC__SERVING__API_KEYS": f'["{SECRET}"]',
           "HYBRIDREC__LAKE__URI": f"postgresql://hybridrec:{SECRET}@db.internal:5432/catalog",
           "HYBRIDREC__LAKE__PROPERTIES": f'{{"s3.secret-access-key": "{SECRET}", "s3.region": "ap-northeast-2"}}'}
    result = CliRunner().invoke(cli, ["config"], env=env)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    shown = json.loads(result.output)
    assert shown["serving"]["api_keys"] == [f"*** ({len(SECRET)} chars)"]
    assert shown["lake"]["uri"] == "postgresql://hybridrec:***@db.internal:5432/catalog"
    assert shown["lake"]["properties"] == {"s3.secret-access-key": f"*** ({len(SECRET)} chars)",
                                           "s3.region": "ap-northeast-2"}
    assert shown["extraction"]["http"]["api_key_env"] == "HYBRIDREC_LLM_API_KEY"  # a variable's name stays


def test_a_secret_setting_is_never_echoed_in_a_config_error():
    result = CliRunner().invoke(cli, ["config"], env={"HYBRIDREC__SERVING__API_KEYS": f'{{"a": "{SECRET}"}}'})
    _assert_one_line_error(result, 1, "serving.api_keys")
    assert SECRET not in result.output


def test_secret_names_and_text():
    assert is_secret_name("api_keys") and is_secret_name("s3.secret-access-key") and is_secret_name("token")
    assert not is_secret_name("max_tokens") and not is_secret_name("api_key_env") and not is_secret_name("uri")
    assert mask_secrets(f"GET http://u:{SECRET}@h/x?api_key={SECRET}&n=1 Bearer {SECRET}") == \
        "GET http://u:***@h/x?api_key=***&n=1 Bearer ***"


def test_log_records_are_masked(capsys):
    configure_logging("INFO")
    logging.getLogger("hybridrec.test").info("opening catalog %s", f"postgresql://u:{SECRET}@db:5432/c")
    err = capsys.readouterr().err
    assert "postgresql://u:***@db:5432/c" in err and SECRET not in err


def test_service_statuses_are_printed_without_the_catalog_password(capsys, tmp_path):
    from hybridrec.cli import _print_statuses
    from hybridrec.infra.services import ServiceStatus

    _print_statuses([ServiceStatus("spark+iceberg", None, True, True, None,
                                   f"local[*] Spark ready, catalog postgresql://u:{SECRET}@db:5432/c", tmp_path)])
    out = capsys.readouterr().out
    assert "catalog postgresql://u:***@db:5432/c" in out and SECRET not in out


def test_the_config_option_is_read_and_passed_on_to_benchmarks(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("serving:\n  port: 8123\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config), "config"], env={"HYBRIDREC_CONFIG": None})
    assert result.exit_code == 0 and json.loads(result.output)["serving"]["port"] == 8123, result.output
    missing = runner.invoke(cli, ["--config", str(tmp_path / "none.yaml"), "config"], env={"HYBRIDREC_CONFIG": None})
    _assert_one_line_error(missing, 1, "config file not found", "none.yaml")
