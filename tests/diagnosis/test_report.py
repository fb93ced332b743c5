"""The JSON report: what it holds, its schema, and the file written at exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conntrace import attributes as A
from conntrace import report

from ..conftest import dynamodb
from ..servers import statuses
from .conftest import Diagnosed


def validate(document: Any) -> None:
    jsonschema.Draft202012Validator(
        report.schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(document)


def provoke_everything(local_url: str, closing_url: str, failing_url: str) -> None:
    """A client per call, a server that closes, a call that is retried: three servers."""
    for _ in range(3):
        dynamodb(local_url).list_tables()
    closing = dynamodb(closing_url)
    for _ in range(3):
        closing.list_tables()
    dynamodb(failing_url).list_tables()


def test_the_schema_is_valid_and_names_every_finding_and_reason():
    schema = report.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    finding = schema["$defs"]["finding"]
    assert finding["properties"]["id"]["enum"] == list(A.FINDINGS)
    assert [rule["if"]["properties"]["id"]["const"] for rule in finding["allOf"]] == list(
        A.FINDINGS
    )
    assert schema["$defs"]["by_reason_count"]["required"] == list(A.REASONS)


def test_a_report_with_findings_validates(diagnosed: Diagnosed, server):
    provoke_everything(
        server().url,
        server(close_after_response=True).url,
        server(respond=statuses(500, 500)).url,
    )

    document = json.loads(json.dumps(report.build([report.section(diagnosed.diagnosis)])))
    validate(document)
    assert document["report_version"] == 3
    assert {f["id"] for f in document["findings"]} >= {
        A.FINDING_CLIENT_RECREATED,
        A.FINDING_SERVER_CLOSES,
        A.FINDING_RETRY_TIME,
        A.FINDING_DEFAULT_TIMEOUTS,
    }
    totals = document["totals"]
    assert totals["api_calls"] == 7
    assert totals["retries"] == 2
    assert totals["connections_by_reason"][A.REASON_FIRST] == 3
    assert totals["connections_by_reason"][A.REASON_NEW_POOL] == 2
    assert totals["connections_by_reason"][A.REASON_SERVER_CLOSED] == 2
    assert [host["server_address"] for host in document["hosts"]] == ["127.0.0.1"] * 3
    assert len({host["server_port"] for host in document["hosts"]}) == 3


def test_a_healthy_report_validates_with_no_findings(diagnosed: Diagnosed, server):
    client = dynamodb(server().url)
    for _ in range(3):
        client.list_tables()

    document = report.build([report.section(diagnosed.diagnosis)])
    validate(document)
    assert document["findings"] == []
    assert document["totals"]["reused"] == 2


def test_the_schema_rejects_a_changed_key(diagnosed: Diagnosed, server):
    local = server()
    for _ in range(3):
        dynamodb(local.url).list_tables()
    document = report.build([report.section(diagnosed.diagnosis)])
    evidence = document["findings"][0]["evidence"]
    evidence["pool_count"] = evidence.pop("pools")

    with pytest.raises(jsonschema.ValidationError, match="pools"):
        validate(document)


PROGRAM = """
import boto3
from opentelemetry.sdk.trace import TracerProvider

import conntrace
from conntrace import findings

provider = TracerProvider()
conntrace.instrument(tracer_provider=provider)
findings.install()
for _ in range(3):
    boto3.client("dynamodb", endpoint_url={url!r}, region_name="us-east-1").list_tables()
print("done")
"""


def run_program(url: str, report_path: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, report.ENV_REPORT: report_path}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROGRAM.format(url=url))],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_conntrace_report_names_a_file_written_at_exit(server, tmp_path: Path):
    path = tmp_path / "report.json"
    finished = run_program(server().url, str(path))

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "done\n"
    text = path.read_text()
    document = json.loads(text)
    validate(document)
    [finding] = [f for f in document["findings"] if f["id"] == A.FINDING_CLIENT_RECREATED]
    assert finding["evidence"]["connections"] == 2
    assert [p["pid"] for p in document["processes"]] != [os.getpid()]
    assert document["made_with"]["processes"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    for secret in ("testing-session-token", os.environ["AWS_SECRET_ACCESS_KEY"], "Authorization"):
        assert secret not in text


def test_an_unwritable_report_path_warns_and_the_program_succeeds(server, tmp_path: Path):
    path = tmp_path / "missing-directory" / "report.json"
    finished = run_program(server().url, str(path))

    assert finished.returncode == 0
    assert finished.stdout == "done\n"
    [warning] = [line for line in finished.stderr.splitlines() if "conntrace" in line]
    assert "could not write the report to" in warning
    assert not path.parent.exists()


def test_no_report_without_the_variable(diagnosed: Diagnosed):
    assert report.write_at_exit(diagnosed.diagnosis, environ={}) is False
    assert report.write_at_exit(diagnosed.diagnosis, environ={report.ENV_REPORT: "  "}) is False


def test_a_report_with_the_new_diagnoses_validates(diagnosed: Diagnosed, server):
    import urllib3

    from .test_not_idempotent import ITEM, client, first_answer_late

    client(server(respond=first_answer_late(0.8)).url).put_item(TableName="table", Item=ITEM)
    idle = server(idle_timeout=0.3)
    manager = urllib3.PoolManager()
    manager.request("GET", idle.url)
    time.sleep(0.6)
    manager.request("GET", idle.url)

    mine = report.section(diagnosed.diagnosis)
    document = json.loads(json.dumps(report.build([mine])))
    validate(document)
    assert {f["id"] for f in document["findings"]} >= {
        A.FINDING_NOT_IDEMPOTENT,
        A.FINDING_IDLE_TIMEOUT,
    }
    origins = {host["server_port"]: host["origins"] for host in document["hosts"]}
    assert origins[idle.port] == [
        {
            "file": __file__,
            "line": origins[idle.port][0]["line"],
            "function": "test_a_report_with_the_new_diagnoses_validates",
            "library": "urllib3",
            "service": "",
            "pools": 1,
        }
    ]
    # Two processes with pools made at the same line: one origin, the pools added up.
    twice = json.loads(json.dumps(report.build([mine, {**mine, "pid": mine["pid"] + 1}])))
    validate(twice)
    merged = {host["server_port"]: host["origins"] for host in twice["hosts"]}
    assert [origin["pools"] for origin in merged[idle.port]] == [2]
