"""The AWS CLI, run as the console script ``aws`` under ``conntrace-run``: its pools are the
CLI's, and the advice is in the CLI's terms."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ..servers import statuses
from .running import BIN, conntrace_run

AWS = BIN / "aws"
pytestmark = pytest.mark.skipif(
    not AWS.exists(),
    reason="the awscli package is not installed here (it needs Python 3.10 or later)",
)
CONSOLE = ["--exporter", "console"]


def aws(endpoint: str, report: Path, *more: str, env: dict[str, str] | None = None):
    command = ["aws", "dynamodb", "list-tables", "--endpoint-url", endpoint, *more]
    return conntrace_run([*CONSOLE, *command], env={"CONNTRACE_REPORT": str(report), **(env or {})})


def test_the_aws_cli_against_moto_is_traced_with_its_origin(moto_endpoint, tmp_path):
    report = tmp_path / "report.json"
    done = aws(moto_endpoint, report, "--cli-connect-timeout", "1")

    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout)["TableNames"], list)
    [summary] = done.summaries().values()
    assert summary.startswith(f"conntrace summary: aws (pid {done.pid})")
    document = json.loads(report.read_text())
    assert document["findings"] == []
    [host] = document["hosts"]
    [origin] = host["origins"]
    # The CLI has no program code above it: the CLI's own frame made the client.
    assert origin["library"] == "awscli"
    assert origin["service"] == "DynamoDB"
    assert f"{os.sep}awscli{os.sep}" in origin["file"]
    assert "DynamoDB client made at" in summary


def test_a_failing_aws_cli_call_gets_advice_in_cli_terms(server, tmp_path):
    report = tmp_path / "report.json"
    failing = server(respond=statuses(*[500] * 10))
    done = aws(failing.url, report, "--cli-connect-timeout", "1", env={"AWS_MAX_ATTEMPTS": "2"})

    assert done.returncode != 0
    assert len(failing.requests) == 2
    findings = {f["id"]: f for f in json.loads(report.read_text())["findings"]}
    timeouts = findings["default_timeouts"]
    # The connect timeout was set on the command line: not called a default.
    assert (
        "botocore's default --cli-read-timeout=60 s (--cli-connect-timeout=1 s set)"
        in (timeouts["summary"])
    )
    assert timeouts["evidence"]["connect_timeout_s"] == 1.0
    assert "--cli-read-timeout" in timeouts["advice"]
    assert "Config(" not in timeouts["advice"]
    retries = findings["time_lost_to_retries"]
    assert "AWS_MAX_ATTEMPTS" in retries["advice"]
    assert "retries={" not in retries["advice"]
    assert "--cli-read-timeout" in done.stderr
