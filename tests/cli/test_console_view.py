"""The terminal view as a user sees it: real programs under ``conntrace-run``, their stderr on
a pseudo-terminal of a given width, checked against what the local server counted."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import socket
import struct
import subprocess
import termios
import time

import pytest

from conntrace import attributes as A
from conntrace.console import Style, render_findings
from conntrace.findings import Finding

from ..servers import Response
from .running import CONNTRACE_RUN, PROGRAMS, clean_environ, conntrace_run, start

ANSI = re.compile(r"\x1b\[[0-9;]*m")
MORE = re.compile(r"… (\d+) more like this \((.*)\)$")


def on_a_terminal(args: list[str], columns: int, env: dict[str, str] | None = None) -> str:
    """Run conntrace-run with stderr on a pseudo-terminal ``columns`` wide; what it wrote
    there, colours removed."""
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    try:
        process = subprocess.Popen(
            [str(CONNTRACE_RUN), *args],
            cwd=PROGRAMS,
            env=clean_environ({"CONNTRACE_COLOR": "always", **(env or {})}),
            stdout=subprocess.DEVNULL,
            stderr=secondary,
        )
        os.close(secondary)
        output = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=60) == 0
    finally:
        os.close(main)
    text = output.decode().replace("\r\n", "\n")
    assert "\x1b[" in text  # coloured: the widths below are measured without the codes
    return ANSI.sub("", text)


def call_lines(stderr: str, port: int) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"GET 127.0.0.1:{port} ")]


def collapsed(stderr: str) -> list[int]:
    return [int(match[1]) for line in stderr.splitlines() if (match := MORE.match(line))]


CALLS = 60


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("threads", [1, 8])
def test_changes_fits_the_width_and_counts_every_call(server, columns, threads):
    local = server()

    shown = on_a_terminal(
        ["--exporter", "console", "python", "many_calls.py", local.url, str(CALLS), str(threads)],
        columns,
    )

    served = sum(c.requests for c in local.connections)
    assert served == CALLS
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= columns
    printed, folded = call_lines(shown, local.port), collapsed(shown)
    # Each call is either printed or counted in a "more like this" line, never both.
    assert len(printed) + sum(folded) == served
    assert folded and len(printed) < CALLS
    # The one connection opened for the reason "first" is never folded into a run.
    assert sum("(first)" in line for line in printed) == 1
    summary = shown[shown.index("conntrace summary:") :]
    assert f"calls {CALLS} · requests {CALLS}" in summary
    peak = int(re.search(r"peak (\d+) in flight", summary)[1])
    assert 1 <= peak <= threads
    assert re.search(r"requests took .* summed · .* of wall time", summary)


def test_all_prints_every_call_and_summary_only_the_summary(server):
    local = server()
    program = ["python", "many_calls.py", local.url, "12"]

    every = on_a_terminal(["--exporter", "console", "--view", "all", *program], 80)
    assert len(call_lines(every, local.port)) == 12
    assert collapsed(every) == []
    assert max(len(line) for line in every.splitlines()) <= 80

    quiet = on_a_terminal(["--exporter", "console", "--view=summary", *program], 120)
    assert call_lines(quiet, local.port) == []
    assert collapsed(quiet) == []
    assert quiet.startswith("conntrace summary: many_calls (pid ")
    assert "calls 12 · requests 12" in quiet
    assert sum(c.requests for c in local.connections) == 24


def test_view_from_the_environment_and_a_bad_value(server):
    local = server()
    program = ["python", "many_calls.py", local.url, "3"]

    done = conntrace_run(["--exporter", "console", *program], env={"CONNTRACE_VIEW": "all"})
    assert len(call_lines(done.stderr, local.port)) == 3

    bad = conntrace_run(["--exporter", "console", "--view", "loud", *program])
    assert bad.returncode == 2
    assert "--view 'loud': expected one of summary, changes, all" in bad.stderr

    warned = conntrace_run(["--exporter", "console", *program], env={"CONNTRACE_VIEW": "loud"})
    assert warned.returncode == 0
    assert "ignoring CONNTRACE_VIEW='loud'" in warned.stderr
    # The default, changes: the first call printed, the other two counted.
    assert len(call_lines(warned.stderr, local.port)) + sum(collapsed(warned.stderr)) == 3


def test_a_retried_call_is_grouped_with_its_errors_named(server):
    answers = iter([Response(status=503), Response(status=503)])
    local = server(respond=lambda request: next(answers, Response()))
    program = (
        "import sys, urllib3; "
        "r = urllib3.PoolManager().request('GET', sys.argv[1], "
        "retries=urllib3.Retry(3, status_forcelist=[503], backoff_factor=0)); "
        "print(r.status)"
    )

    done = conntrace_run(["--exporter", "console", "python", "-c", program, local.url])

    assert done.returncode == 0 and done.stdout == "200\n"
    lines = done.stderr.splitlines()
    head = next(line for line in lines if "3 attempts" in line)
    assert head.startswith(f"127.0.0.1:{local.port} 200 · 3 attempts (retried after 503, 503)")
    summary = next(i for i, line in enumerate(lines) if line.startswith("conntrace summary"))
    below = lines[lines.index(head) + 1 : summary]
    assert [line.lstrip("│ ├└─").split(" · ")[0] for line in below if "GET" in line] == [
        f"GET 127.0.0.1:{local.port} 503",
        f"GET 127.0.0.1:{local.port} 503",
        f"GET 127.0.0.1:{local.port} 200",
    ]
    assert len(local.requests) == 3


def test_a_slow_call_is_announced_on_a_terminal_only(server):
    local = server(respond=lambda request: Response(delay=2.5))
    program = ["--exporter", "console", "python", "many_calls.py", local.url, "1"]

    shown = on_a_terminal(program, 100)
    [live] = [line for line in shown.splitlines() if "still running" in line]
    assert re.fullmatch(
        rf"… 127\.0\.0\.1:{local.port} still running after 2\.\d s: attempt 1, request", live
    )
    # The call's own line comes after, when it ends.
    assert shown.index("still running") < shown.index(f"GET 127.0.0.1:{local.port} 200")

    piped = conntrace_run(program)
    assert piped.returncode == 0
    assert "still running" not in piped.stderr
    assert len(local.requests) == 2


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("localhost", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_no_collector_no_wait_the_summary_and_one_line(server):
    if _listening(4317) or _listening(4318):
        pytest.skip("something listens on the default OTLP ports here")
    local = server()

    process = start(["python", "many_calls.py", local.url, "3"])
    assert process.stdout is not None
    assert process.stdout.readline() == "calls done: 3\n"
    ended = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    elapsed = time.monotonic() - ended

    assert process.returncode == 0
    assert elapsed < 0.5, f"exit took {elapsed:.2f} s after the program's end"
    lines = stderr.splitlines()
    assert lines[0].startswith("conntrace summary: many_calls (pid ")
    assert "    calls 3 · requests 3 · connections opened 1 (first 1)" in lines
    [last] = [line for line in lines if line.startswith("conntrace:")]
    assert last == (
        "conntrace: traces were not sent (no collector at localhost:4317); "
        "view them with `docker compose up`, or `--html report.html`"
    )
    assert "StatusCode" not in stderr and "rror" not in stderr


def _finding(id: str, target: str, severity: str = "warning") -> Finding:
    return Finding(id, severity, id.replace("_", " "), target, "what was seen", "what to do", {})


def test_findings_that_follow_from_a_cause_are_named_beneath_it_unless_all_is_asked():
    findings = [
        _finding(A.FINDING_SETUP_SHARE, "a:443"),
        _finding(A.FINDING_CLIENT_RECREATED, "a:443"),
        _finding(A.FINDING_REPEATED_DNS, "a:443", "info"),
        # No cause for b:443 among the findings: its own finding is the news, shown whole.
        _finding(A.FINDING_SETUP_SHARE, "b:443"),
    ]
    style = Style(io.StringIO(), "never")

    brief = render_findings(findings, style, 100, whole=False)
    every = render_findings(findings, style, 100, whole=True)

    def shown(lines: list[str]) -> list[str]:
        return [line.split("(")[-1].rstrip(")") for line in lines if line.startswith("  [")]

    assert shown(brief) == [A.FINDING_CLIENT_RECREATED, A.FINDING_SETUP_SHARE]
    assert brief[brief.index("    advice: what to do") + 1] == (
        f"    also, from the same cause: {A.FINDING_SETUP_SHARE}, {A.FINDING_REPEATED_DNS}"
    )
    assert brief[0] == every[0] == "  findings: 4"
    assert shown(every) == [finding.id for finding in findings]
    assert not any("also, from the same cause" in line for line in every)
