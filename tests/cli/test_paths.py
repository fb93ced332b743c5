"""Relative paths in settings mean where ``conntrace-run`` was started, not where the program
happens to be when the path is used (the report is written at exit, after any ``os.chdir``).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from .running import CONNTRACE_RUN, clean_environ

PROGRAM = textwrap.dedent(
    """
    import json, os, sys, urllib3
    urllib3.PoolManager().request("GET", sys.argv[1])
    os.chdir(sys.argv[2])
    names = [n for n in os.environ if n.startswith(("CONNTRACE_REPORT", "CONNTRACE_HTML",
                                                   "OTEL_EXPORTER"))]
    print(json.dumps({name: os.environ[name] for name in names}))
    """
)


def run_from(start: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CONNTRACE_RUN), *args],
        cwd=start,
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_relative_report_path_is_where_conntrace_run_started(how, server, tmp_path: Path):
    local = server()
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    (start / "app.py").write_text(PROGRAM)
    report_option = ["--report", "out/report.json"] if how == "flag" else []
    env = {"CONNTRACE_REPORT": "out/report.json"} if how == "variable" else {}
    (start / "out").mkdir()
    (elsewhere / "out").mkdir()

    done = run_from(
        start,
        ["--exporter", "none", *report_option, "python", "app.py", local.url, str(elsewhere)],
        env,
    )

    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # The program, and any child it starts, sees the absolute path.
    assert seen["CONNTRACE_REPORT"] == str(start / "out" / "report.json")
    assert json.loads((start / "out" / "report.json").read_text())["totals"]["requests"] == 1
    assert not (elsewhere / "out" / "report.json").exists()


def test_relative_html_path_is_where_conntrace_run_started(server, tmp_path: Path):
    local = server()
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    (start / "app.py").write_text(PROGRAM)

    done = run_from(
        start,
        ["--exporter", "none", "--html", "run.html", "python", "app.py", local.url, str(elsewhere)],
        {},
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["CONNTRACE_HTML"] == str(start / "run.html")
    assert f"127.0.0.1:{local.port}" in (start / "run.html").read_text(encoding="utf-8")
    assert not (elsewhere / "run.html").exists()


def test_relative_exporter_file_paths_are_made_absolute(server, tmp_path: Path):
    local = server()
    (tmp_path / "app.py").write_text(PROGRAM)
    env = {
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "certs/ca.pem",
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": "certs/key.pem",
        "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE": "/already/absolute.pem",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }

    done = run_from(
        tmp_path, ["--exporter", "none", "python", "app.py", local.url, str(tmp_path)], env
    )

    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["OTEL_EXPORTER_OTLP_CERTIFICATE"] == os.path.join(tmp_path, "certs/ca.pem")
    assert seen["OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"] == os.path.join(tmp_path, "certs/key.pem")
    assert seen["OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE"] == "/already/absolute.pem"
    # Not a path: left as it was.
    assert seen["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:9"
