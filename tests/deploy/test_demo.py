"""examples/keepalive_demo.py, the README's first command: alone, and under conntrace-run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conntrace import attributes as A

from ..otlp_receiver import OtlpReceiver
from .conftest import ROOT

DEMO = str(ROOT / "examples" / "keepalive_demo.py")
CONNTRACE_RUN = str(Path(sys.executable).with_name("conntrace-run"))
CALLS = 4
# Small, to keep the suite quick: the shape of the story does not depend on it.
SMALL = ["--calls", str(CALLS), "--rtt-ms", "5"]


def run(command: list[str], **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **environ},
    )


def table(stdout: str) -> dict[str, tuple[int, int]]:
    """Scenario letter -> (endpoint port, connections the endpoint accepted)."""
    rows = {}
    for line in stdout.splitlines():
        words = line.split()
        endpoints = [word for word in words if word.startswith("localhost:")]
        if line[:3] in ("(a)", "(b)", "(c)") and endpoints:
            rows[line[1]] = (int(endpoints[0].split(":")[1]), int(words[-1]))
    return rows


def test_demo_runs_by_itself_and_prints_three_timings():
    done = run([sys.executable, DEMO, *SMALL])
    assert done.returncode == 0, done.stderr
    rows = table(done.stdout)
    assert {letter: connections for letter, (_, connections) in rows.items()} == {
        "a": 1,
        "b": CALLS,
        "c": CALLS,
    }
    assert "Compared with (a)" in done.stdout and "conntrace-run" in done.stdout


def test_demo_refuses_bad_arguments_with_exit_2():
    done = run([sys.executable, DEMO, "--calls", "0"])
    assert done.returncode == 2
    assert "expected a positive number" in done.stderr.splitlines()[-1]


def test_console_view_of_the_demo_names_the_reasons():
    console = ["--exporter", "console", "--color", "never"]
    done = run([CONNTRACE_RUN, *console, sys.executable, DEMO, *SMALL])
    assert done.returncode == 0, done.stderr
    assert set(table(done.stdout)) == {"a", "b", "c"}
    for reason in (A.REASON_FIRST, A.REASON_SERVER_CLOSED, A.REASON_NEW_POOL):
        assert reason in done.stderr


def test_demo_spans_say_why_b_and_c_open_connections():
    with OtlpReceiver(protocol="grpc") as receiver:
        done = run([CONNTRACE_RUN, sys.executable, DEMO, *SMALL], **receiver.environ())
        assert done.returncode == 0, done.stderr
        spans = receiver.wait_for_spans(
            lambda got: sum(s.name == "DynamoDB.GetItem" for s in got) == 3 * CALLS, timeout=5
        )

    ports = {letter: port for letter, (port, _) in table(done.stdout).items()}
    attempts = sorted(
        (s for s in spans if A.HTTP_REQUEST_METHOD in s.attributes),
        key=lambda s: s.start_time_unix_nano,
    )

    def reasons(letter: str) -> list[object]:
        return [
            s.attributes.get(A.CONNECTION_REASON, "reused")
            for s in attempts
            if s.attributes[A.SERVER_PORT] == ports[letter]
        ]

    assert reasons("a") == [A.REASON_FIRST] + ["reused"] * (CALLS - 1)
    assert reasons("b") == [A.REASON_FIRST] + [A.REASON_SERVER_CLOSED] * (CALLS - 1)
    assert reasons("c") == [A.REASON_FIRST] + [A.REASON_NEW_POOL] * (CALLS - 1)
    # Each new connection paid a TLS handshake over the simulated network.
    handshakes = [s for s in spans if s.name.startswith(A.SPAN_TLS)]
    assert len(handshakes) == 1 + 2 * CALLS
    # The demo's own span per scenario holds its calls: one trace per scenario in Jaeger.
    scenarios = {s.name for s in spans if s.name.startswith("scenario ")}
    assert len(scenarios) == 3


def test_console_view_of_the_full_demo_fits_a_screen_per_scenario():
    # The README's `./run demo`: 100 calls per scenario, at the default view (changes).
    console = ["--exporter", "console", "--color", "never"]
    done = run(
        [CONNTRACE_RUN, *console, sys.executable, DEMO, "--rtt-ms", "2"],
        COLUMNS="80",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert max(len(line) for line in lines) <= 80
    summary = next(i for i, line in enumerate(lines) if line.startswith("conntrace summary:"))
    calls = [line for line in lines[:summary] if line.startswith("DynamoDB.GetItem 200")]
    more = [line for line in lines[:summary] if " more like this " in line]
    # Every one of the 300 calls is either printed or counted, and the answer is in the
    # three runs: reused, new because the server closed, new because of a new pool.
    assert len(calls) + sum(int(line.split()[1]) for line in more) == 300
    assert [line.split("(", 1)[1].split(",")[0] for line in more] == [
        "reused",
        f"new ({A.REASON_SERVER_CLOSED})",
        f"new ({A.REASON_NEW_POOL})",
    ]
    assert summary < 80
    # The whole output, findings and all, fits one 80-line screen (it was 1,490 lines): the
    # findings that follow from a host's cause are named in one line beneath it.
    assert len(lines) < 80
    folded = [line for line in lines if line.strip().startswith("also, from the same cause:")]
    assert len(folded) == 2
