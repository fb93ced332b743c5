"""Running ``conntrace-run`` as a user does: the installed console script, in a subprocess.

The programs it runs live in ``programs/``; they talk only to the local servers a test
starts on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROGRAMS = Path(__file__).parent / "programs"
BIN = Path(sys.executable).parent
CONNTRACE_RUN = BIN / "conntrace-run"


@dataclass
class Run:
    pid: int
    returncode: int
    stdout: str
    stderr: str

    def waterfall_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.rstrip().endswith(" ms")]

    def summaries(self) -> dict[int, str]:
        """The end-of-run summary of each process, by pid."""
        found = {}
        for match in _SUMMARY.finditer(self.stderr):
            found[int(match["pid"])] = match.group(0)
        return found


_SUMMARY = re.compile(r"conntrace summary: .* \(pid (?P<pid>\d+)\)\n(?:  .*\n)*")


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any tracing set-up, plus ``extra``.

    The venv's bin comes first on PATH, so ``python`` is the interpreter conntrace is
    installed in, as in an activated virtual environment.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OTEL_", "CONNTRACE_")) and name not in ("PYTHONPATH", "NO_COLOR")
    }
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env.update(extra or {})
    return env


def conntrace_run(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    before: Sequence[str] = (),
) -> Run:
    """Run ``conntrace-run args...`` (after the command ``before``, if any) to its end."""
    process = start(args, env, before)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return Run(process.pid, process.returncode, stdout, stderr)


def start(
    args: Sequence[str], env: Mapping[str, str] | None = None, before: Sequence[str] = ()
) -> subprocess.Popen[str]:
    assert CONNTRACE_RUN.exists(), f"{CONNTRACE_RUN} is missing: pip install -e . installs it"
    return subprocess.Popen(
        [*before, str(CONNTRACE_RUN), *args],
        cwd=PROGRAMS,
        env=clean_environ(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
