"""Runs a program in ``programs/`` under ``conntrace-run --exporter none --report`` and reads
the report, the only output these tests judge conntrace by."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cli.running import CONNTRACE_RUN, clean_environ

PROGRAMS = Path(__file__).parent / "programs"

_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

# Fake credentials and no instance metadata: botocore never looks beyond this machine.
_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing-session-token",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class Traced:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]

    def host(self, port: int) -> dict[str, Any]:
        """The report's entry for the server on 127.0.0.1:``port``."""
        found = [
            host
            for host in self.report.get("hosts", [])
            if host.get("server_address") == "127.0.0.1" and host.get("server_port") == port
        ]
        where = [(h.get("server_address"), h.get("server_port")) for h in self.report["hosts"]]
        assert len(found) == 1, f"one host entry for 127.0.0.1:{port} expected, got {where}"
        return found[0]

    def finding(self, finding_id: str) -> dict[str, Any]:
        found = [f for f in self.report.get("findings", []) if f.get("id") == finding_id]
        ids = [f.get("id") for f in self.report.get("findings", [])]
        assert len(found) == 1, f"one {finding_id!r} finding expected, the report has {ids}"
        return found[0]

    def finding_ids(self) -> list[str]:
        return sorted(f["id"] for f in self.report.get("findings", []))


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = clean_environ()
    for name in _PROXIES:
        env.pop(name, None)
        env.pop(name.lower(), None)
    env.update(_AWS)
    env.update(extra or {})
    return env


def traced(
    program: str,
    args: Sequence[str],
    report: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 90,
) -> Traced:
    """``conntrace-run --exporter none --report REPORT python programs/PROGRAM ARGS...``."""
    assert CONNTRACE_RUN.exists(), f"{CONNTRACE_RUN} is missing: pip install -e . installs it"
    finished = subprocess.run(
        [
            str(CONNTRACE_RUN),
            "--exporter",
            "none",
            "--report",
            str(report),
            "python",
            str(PROGRAMS / program),
            *args,
        ],
        cwd=PROGRAMS,
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert finished.returncode == 0, f"{program} failed:\n{finished.stderr}"
    assert report.exists(), f"no report was written to {report}:\n{finished.stderr}"
    document = json.loads(report.read_text())
    return Traced(finished.returncode, finished.stdout, finished.stderr, document)


def opened(counts: Mapping[str, int]) -> dict[str, int]:
    """Connections opened by reason, without the reasons that did not occur."""
    return {reason: n for reason, n in counts.items() if n}
