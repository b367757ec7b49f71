"""The command line refuses bad arguments with a message, and does not print secrets."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hybridrec.cli import cli


@pytest.mark.parametrize("args, message", [
    (["generate", "--events", "-5"], "-5 is not in the range x>=1"),
    (["feed", "u-any", "--limit", "0"], "0 is not in the range 1<=x<=100"),
    (["bench", "serving", "--rates", "50,abc"], "comma-separated numbers"),
    (["bench", "serving", "--rates", "50,-1"], "every rate must be above 0"),
    (["distill", "--llm-budget-texts", "-1"], "-1 is not in the range x>=0"),
])
def test_bad_arguments_are_refused_before_anything_runs(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and message in result.output


def test_the_config_shows_api_keys_masked():
    result = CliRunner().invoke(cli, ["config"], env={"HYBRIDREC__SERVING__API_KEYS": '["supersecretkey"]'})
    assert result.exit_code == 0 and "supersecretkey" not in result.output
    assert json.loads(result.output)["serving"]["api_keys"] == ["su*** (14 chars)"]
