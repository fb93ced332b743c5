"""Ctrl-C while conntrace sends spans at exit ends the export at once, quietly.

The collector accepts connections on 127.0.0.1 and never answers, so the exit-time export
waits out its bound (30 s here) unless interrupted. Two SIGINTs arrive during that wait.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .running import conntrace_run, start


@pytest.fixture
def silent_collector() -> Iterator[str]:
    """An OTLP/HTTP address whose server accepts every connection and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    # Accepted by the kernel from the backlog: the client's connect succeeds, its request
    # is never read and never answered.
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def exporting_to(collector: str, report: Path) -> list[str]:
    # The report is written after the export, at exit too: it must not complain either.
    return [
        "--protocol",
        "http/protobuf",
        "--endpoint",
        collector,
        "--export-timeout",
        "30",
        "--report",
        str(report),
    ]


def interrupt_twice(process: subprocess.Popen[str], gap: float = 0.3) -> None:
    for _ in range(2):
        try:
            process.send_signal(signal.SIGINT)
        except ProcessLookupError:
            return
        time.sleep(gap)


def finish(process: subprocess.Popen[str], timeout: float = 10) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, stdout, stderr


def test_second_ctrl_c_after_the_program_was_interrupted(server, silent_collector, tmp_path):
    local = server()
    process = start(
        [
            *exporting_to(silent_collector, tmp_path / "report.json"),
            "python",
            "wait_for_signal.py",
            local.url,
        ]
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("ready pid=")

    # The first Ctrl-C ends the program (a KeyboardInterrupt of its own); the export at
    # exit then waits on the silent collector, and the second Ctrl-C ends that.
    process.send_signal(signal.SIGINT)
    time.sleep(1.5)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    returncode, _, stderr = finish(process)

    assert time.monotonic() - started < 5
    # As without conntrace: the program dies of its unhandled SIGINT.
    assert returncode == -signal.SIGINT
    assert "Exception ignored" not in stderr
    assert "conntrace" not in stderr
    # The program's own traceback, from its own KeyboardInterrupt, is still its own.
    assert "wait_for_signal.py" in stderr


def test_two_ctrl_c_during_the_export_keep_the_programs_exit_status(
    server, silent_collector, tmp_path
):
    local = server()
    process = start(
        [*exporting_to(silent_collector, tmp_path / "report.json"), "python", "exit3.py", local.url]
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "about to exit 3\n"

    time.sleep(1.5)  # the program has exited: the export is waiting
    started = time.monotonic()
    interrupt_twice(process)
    returncode, _, stderr = finish(process)

    assert time.monotonic() - started < 5
    assert returncode == 3
    assert stderr == ""
    assert (tmp_path / "report.json").exists()


def test_without_an_interrupt_the_export_waits_for_its_bound(server, silent_collector, tmp_path):
    # The collector really holds the export back: uninterrupted, exit takes the bound.
    local = server()
    args = exporting_to(silent_collector, tmp_path / "report.json")
    args[args.index("30")] = "2"
    started = time.monotonic()

    done = conntrace_run([*args, "python", "exit3.py", local.url])

    assert time.monotonic() - started >= 1.5
    assert done.returncode == 3
    assert done.stderr.startswith("conntrace: spans not sent to ")
