"""A program started with stdout or stderr closed (``>&-``, ``2>&-``) runs, traced.

conntrace has nowhere to write then: it must write nothing, and neither fail nor make the
program fail. The shell closes the stream, as a user's would, before ``conntrace-run``
starts.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conntrace import attributes as A

from ..otlp_receiver import OtlpReceiver
from .running import conntrace_run

# The shell execs what follows with the stream closed.
CLOSE = {"stdout": 'exec "$@" >&-', "stderr": 'exec "$@" 2>&-'}

PROGRAM = textwrap.dedent(
    """
    import os, sys, urllib3
    # Opened after start-up: with a closed standard descriptor, this file would take its
    # number, and anything written to "stderr" by native code would land in it.
    with open(sys.argv[2], "w") as out:
        response = urllib3.PoolManager().request("GET", sys.argv[1])
        out.write(f"status={response.status} stderr={sys.stderr is None} "
                  f"stdout={sys.stdout is None}\\n")
    """
)


def closed(stream: str) -> list[str]:
    return ["sh", "-c", CLOSE[stream], "sh"]


@pytest.mark.parametrize("stream", ["stderr", "stdout"])
def test_true_runs_with_a_closed_stream(stream):
    done = conntrace_run(["--exporter", "none", "true"], before=closed(stream))

    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""


@pytest.mark.parametrize("stream", ["stderr", "stdout"])
def test_python_program_is_traced_with_a_closed_stream(stream, server, tmp_path: Path):
    local = server()
    program = tmp_path / "closed_app.py"
    program.write_text(PROGRAM)
    out = tmp_path / "out.txt"
    report = tmp_path / "report.json"

    with OtlpReceiver(protocol="http") as receiver:
        done = conntrace_run(
            # The terminal view asks for stderr, which may not be there.
            ["--console", "--report", str(report), "python", str(program), local.url, str(out)],
            env=receiver.environ(),
            before=closed(stream),
        )
        spans = receiver.wait_for_spans(
            lambda got: any(s.attributes.get(A.HTTP_REQUEST_METHOD) == "GET" for s in got),
            timeout=10,
        )

    assert done.returncode == 0, done.stderr
    closed_now = {"stderr": stream == "stderr", "stdout": stream == "stdout"}
    assert out.read_text() == (
        f"status=200 stderr={closed_now['stderr']} stdout={closed_now['stdout']}\n"
    )
    # Traced: the request reached the collector and the report.
    assert [s.attributes[A.SERVER_PORT] for s in spans if s.name == "GET"] == [local.port]
    assert json.loads(report.read_text())["totals"]["requests"] == 1
    if stream == "stdout":
        # stderr is open: the terminal view is there, and no error.
        assert "conntrace summary:" in done.stderr
        assert "Traceback" not in done.stderr
    else:
        assert done.stderr == ""
    assert done.stdout == ""
