"""Benchmark parts that run as child processes, spoken to in JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class ChildProcess:
    """``python -m <module> <args>``: its first line of output is ``hello``; each command
    written to its standard input gets one JSON line back; it ends when that input closes,
    so it cannot outlive this process by much."""

    def __init__(self, module: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.name = module.rpartition(".")[2]
        self._process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=None if env is None else dict(env),
        )
        self.pid = self._process.pid
        try:
            self.hello = self._read()
        except BaseException:
            self.close()
            raise

    def ask(self, command: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise RuntimeError(f"benchmark {self.name} process ended (exit status {code})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"benchmark {self.name} process: {answer['error']}")
        return answer

    def close(self, timeout: float = 30.0) -> None:
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
