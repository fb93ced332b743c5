"""Proxy variables in the developer's environment do not reach the tests' programs.

The test suite is run, in a subprocess, with every proxy variable pointing at a local
listener that counts the connections it gets; a test of that run sends a program's calls
to its local server under ``conntrace-run``. The server must see them, the proxy nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A real program under conntrace-run, calling a local server through botocore.
INNER = "tests/cli/test_programs.py::test_script_each_call_as_a_waterfall_and_a_summary"


def test_proxy_variables_of_the_test_run_are_ignored():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    env = dict(os.environ)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy
    # Nothing is exempt, not even loopback.
    env["NO_PROXY"] = env["no_proxy"] = ""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", INNER],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop.set()
        thread.join()
        listener.close()
        for sock in accepted:
            sock.close()

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert accepted == []
