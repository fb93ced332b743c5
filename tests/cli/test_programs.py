"""``conntrace-run`` on real programs, read through its terminal view on stderr.

Each kind of program a user runs: a script, ``-m module``, a console script, one that
starts child Python processes, one that exits 3, one killed by a signal, one with its own
``sitecustomize``. The local server counts the connections it really accepted, so what the
view claims is checked against the wire.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

from .running import BIN, CONNTRACE_RUN, PROGRAMS, clean_environ, conntrace_run, start

CONSOLE = ["--exporter", "console"]


def shown(stderr: str) -> list[str]:
    """The waterfalls' lines (those with a bar), without the tree drawn before them."""
    return [line.lstrip("│ ├└─") for line in stderr.splitlines() if "|" in line]


def attempt_lines(stderr: str, host: str) -> list[str]:
    return [line for line in shown(stderr) if line.startswith((f"GET {host} ", f"POST {host} "))]


def test_script_each_call_as_a_waterfall_and_a_summary(server):
    local = server()

    done = conntrace_run([*CONSOLE, "--view", "all", "python", "calls.py", local.url, "3"])

    assert done.returncode == 0, done.stderr
    # exec: the program is this very process.
    assert done.stdout == f"calls done pid={done.pid}\n"
    host = f"127.0.0.1:{local.port}"
    calls = [line for line in done.stderr.splitlines() if line.startswith("DynamoDB.ListTables")]
    assert len(calls) == 3
    assert all("DynamoDB.ListTables 200 · 1 attempt" in line for line in calls)
    attempts = attempt_lines(done.stderr, host)
    assert "POST" in attempts[0]
    assert "new #1 (first)" in attempts[0]
    assert "reused #1 · 2nd request · idle" in attempts[1]
    assert "reused #1 · 3rd request · idle" in attempts[2]
    assert sum(line.startswith("TCP connect") for line in shown(done.stderr)) == 1
    summary = done.summaries()[done.pid]
    assert summary.startswith("conntrace summary: calls (pid ")
    assert f"  {host}\n" in summary
    assert "calls 3 · requests 3 · connections opened 1 (first 1)" in summary
    assert "reused 2 of 3 requests (67%)" in summary
    # The server agrees: one TCP connection carried the three requests.
    assert [c.requests for c in local.connections] == [3]


def test_module_run_with_dash_m(server):
    local = server()

    done = conntrace_run([*CONSOLE, "python", "-m", "demo_pkg", local.url])

    assert done.returncode == 0, done.stderr
    summary = done.summaries()[done.pid]
    # The service is named after the module.
    assert summary.startswith("conntrace summary: demo_pkg (pid ")
    assert "calls 2 · requests 2 · connections opened 1 (first 1)" in summary


def test_console_script(server, tmp_path: Path):
    # What pip writes for a console script such as `aws`: a Python file with a shebang.
    scripts = tmp_path / "bin"
    scripts.mkdir()
    script = scripts / "democalls"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(PROGRAMS)!r})\n"
        "from calls import main\n"
        "sys.exit(main())\n"
    )
    script.chmod(0o755)
    local = server()

    done = conntrace_run(
        [*CONSOLE, "democalls", local.url],
        env={"PATH": os.pathsep.join([str(scripts), str(BIN), os.environ.get("PATH", "")])},
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"calls done pid={done.pid}\n"
    summary = done.summaries()[done.pid]
    assert summary.startswith("conntrace summary: democalls (pid ")
    assert "calls 2 · requests 2 · connections opened 1 (first 1)" in summary


def test_child_process_started_by_subprocess_is_traced(server, tmp_path):
    parent_server, child_server = server(), server()
    report_path = tmp_path / "report.json"

    done = conntrace_run(
        [*CONSOLE, "python", "parent.py", parent_server.url, "subprocess", child_server.url],
        env={"CONNTRACE_REPORT": str(report_path)},
    )

    assert done.returncode == 0, done.stderr
    child_pid = int(done.stdout.split("calls done pid=")[1].split()[0])
    assert child_pid != done.pid
    summaries = done.summaries()
    assert set(summaries) == {done.pid, child_pid}
    # Each summary is labelled by its own program; the child inherits only the service name.
    assert summaries[done.pid].startswith(f"conntrace summary: parent (pid {done.pid})")
    assert summaries[child_pid].startswith(f"conntrace summary: calls (pid {child_pid})")
    processes = json.loads(report_path.read_text())["processes"]
    assert {p["pid"]: p["program"] for p in processes} == {done.pid: "parent", child_pid: "calls"}
    assert f"127.0.0.1:{parent_server.port}" in summaries[done.pid]
    assert f"127.0.0.1:{child_server.port}" not in summaries[done.pid]
    child_summary = summaries[child_pid]
    assert f"127.0.0.1:{child_server.port}" in child_summary
    assert "calls 2 · requests 2 · connections opened 1 (first 1)" in child_summary


def test_forked_multiprocessing_worker_is_traced(server):
    parent_server, child_server = server(), server()

    program = ["python", "parent.py", parent_server.url, "fork", child_server.url]
    done = conntrace_run([*CONSOLE, *program])

    assert done.returncode == 0, done.stderr
    child_pid = int(done.stdout.split("calls done pid=")[1].split()[0])
    child_host = f"127.0.0.1:{child_server.port}"
    assert len(attempt_lines(done.stderr, child_host)) == 2
    summaries = done.summaries()
    # The worker reports its own calls only, not the parent's made before the fork.
    assert child_host in summaries[child_pid]
    assert f"127.0.0.1:{parent_server.port}" not in summaries[child_pid]
    assert child_host not in summaries[done.pid]


def test_exit_code_is_the_programs(server):
    local = server()

    done = conntrace_run([*CONSOLE, "python", "exit3.py", local.url])

    assert done.returncode == 3
    assert done.stdout == "about to exit 3\n"
    assert "calls 1 · requests 1" in done.summaries()[done.pid]


def test_signal_reaches_the_program_itself(server):
    local = server()
    process = start([*CONSOLE, "python", "wait_for_signal.py", local.url])
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready == f"ready pid={process.pid}\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM
    finally:
        process.kill()
        process.communicate()


def test_programs_own_sitecustomize_and_pythonpath_keep_working(server):
    local = server()

    done = conntrace_run(
        [*CONSOLE, "python", "uses_own_site.py", local.url],
        env={"PYTHONPATH": str(PROGRAMS / "own_site")},
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == "own sitecustomize: ran\n"
    assert len(attempt_lines(done.stderr, f"127.0.0.1:{local.port}")) == 1


def test_conntrace_is_set_up_once_per_process(server):
    local = server()

    done = conntrace_run([*CONSOLE, "python", "start_twice.py", local.url])

    assert done.returncode == 0, done.stderr
    assert done.stdout == "same session: True; console views: 1\n"
    # One span processor, so each request is shown once.
    assert len(attempt_lines(done.stderr, f"127.0.0.1:{local.port}")) == 1


def test_tls_handshake_on_its_own_line(tls_server, ca, tmp_path: Path):
    local = tls_server()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    done = conntrace_run([*CONSOLE, "python", "tls_calls.py", local.url, str(ca_file)])

    assert done.returncode == 0, done.stderr
    phases = shown(done.stderr)
    assert len([line for line in phases if line.startswith("DNS ")]) == 1
    assert len([line for line in phases if line.startswith("TCP connect 127.0.0.1:")]) == 1
    [tls] = [line for line in phases if line.startswith("TLS 1.")]
    assert " handshake " in tls and tls.endswith(" ms")
    summary = done.summaries()[done.pid]
    assert "reused 1 of 2 requests (50%)" in summary
    assert "TLS 0.00 ms" not in summary


def stderr_on_a_terminal(args: list[str], env: dict[str, str] | None = None) -> str:
    """Run conntrace-run with stderr on a pseudo-terminal; what it wrote there."""
    main, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(CONNTRACE_RUN), *args],
            cwd=PROGRAMS,
            env=clean_environ(env),
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
        assert process.wait(timeout=60) == 3
    finally:
        os.close(main)
    return output.decode()


def test_colours_only_on_a_terminal(server):
    local = server()
    program = ["python", "exit3.py", local.url]

    assert "\x1b[" not in conntrace_run([*CONSOLE, *program]).stderr
    assert "\x1b[" in conntrace_run([*CONSOLE, "--color", "always", *program]).stderr
    on_terminal = stderr_on_a_terminal([*CONSOLE, *program])
    assert "\x1b[" in on_terminal
    assert "new #1 (first)" in on_terminal
    assert "\x1b[" not in stderr_on_a_terminal([*CONSOLE, *program], env={"NO_COLOR": "1"})


def test_sdk_disabled_runs_the_program_untraced(server):
    local = server()

    done = conntrace_run(
        [*CONSOLE, "python", "exit3.py", local.url], env={"OTEL_SDK_DISABLED": "true"}
    )

    assert (done.returncode, done.stdout, done.stderr) == (3, "about to exit 3\n", "")


def test_failing_sitecustomize_of_the_program_is_reported_as_python_would(server):
    local = server()

    done = conntrace_run(
        [*CONSOLE, "python", "exit3.py", local.url],
        env={"PYTHONPATH": str(PROGRAMS / "broken_site")},
    )

    assert done.returncode == 3
    assert "Error in sitecustomize" in done.stderr
    assert "the program's sitecustomize failed" in done.stderr
    # conntrace started all the same.
    assert len(attempt_lines(done.stderr, f"127.0.0.1:{local.port}")) == 1


def test_conntrace_that_cannot_start_leaves_one_warning_and_the_program_runs(server):
    local = server()
    # A broken conntrace after the bootstrap on the program's PYTHONPATH, ahead of the
    # installed one: the bootstrap's own import of conntrace fails.
    program = 'PYTHONPATH="$PYTHONPATH:$FAKE" exec python exit3.py "$0"'

    done = conntrace_run(
        [*CONSOLE, "sh", "-c", program, local.url],
        env={"FAKE": str(PROGRAMS / "fake_conntrace")},
    )

    assert (done.returncode, done.stdout) == (3, "about to exit 3\n")
    [warning] = done.stderr.splitlines()
    assert warning.startswith(
        "conntrace: not started (ImportError: this conntrace is broken on purpose); "
        "the program runs untraced"
    )


def test_connection_dropped_while_idle_is_shown_where_it_happened(server):
    # The server closes connections idle for 0.2 s; the program waits 1 s between calls.
    local = server(idle_timeout=0.2)

    done = conntrace_run([*CONSOLE, "python", "calls_apart.py", local.url, "1"])

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    second = next(i for i, line in enumerate(lines) if "new #2 (stale)" in line)
    assert lines[second].startswith(f"GET 127.0.0.1:{local.port} 200 · new #2 (stale)")
    # The event is drawn beneath the attempt it happened in, before its new connect.
    assert "! #1 was closed by the peer while idle " in lines[second + 1]
    assert lines[second + 1].endswith("(FIN): reconnecting")
    # 127.0.0.1 is not looked up: the new connect comes next.
    assert lines[second + 2].lstrip("│ ├└─").startswith("TCP connect ")
    assert "connections opened 2 (first 1, stale 1)" in done.summaries()[done.pid]


def test_nested_conntrace_run_sets_up_once(server):
    local = server()
    program = (
        "import os, sys, urllib3; from conntrace.bootstrap import PATH; "
        "urllib3.PoolManager().request('GET', sys.argv[1]); "
        "print(os.environ['PYTHONPATH'].split(os.pathsep).count(PATH))"
    )

    done = conntrace_run([*CONSOLE, str(CONNTRACE_RUN), "python", "-c", program, local.url])

    assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr
    assert len(attempt_lines(done.stderr, f"127.0.0.1:{local.port}")) == 1
    assert len(done.summaries()) == 1
