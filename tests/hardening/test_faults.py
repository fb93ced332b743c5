"""Faults inside conntrace, one at a time, never reach the program.

``programs/faults.py`` runs one workload untraced, then traced with a fault injected in
each hook's start, then in its finish (the hooks are read from the patcher, so a new hook
is covered without a change here), then in each fact each reader of the ledger takes,
then with a class the pool layer patches missing from urllib3. Each time the program sees
the same results, the servers count the same connections and requests, and conntrace
warns exactly once, naming the place that failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..cli.running import clean_environ

PROGRAM = Path(__file__).parent / "programs" / "faults.py"


@pytest.fixture(scope="module")
def runs() -> list[dict]:
    done = subprocess.run(
        [sys.executable, str(PROGRAM)],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _outcomes(runs: list[dict], phase: str) -> dict[str, dict]:
    return {run["where"]: run for run in runs if run.get("phase") == phase}


def _same(run: dict, untraced: dict) -> bool:
    return run["seen"] == untraced["seen"] and run["servers"] == untraced["servers"]


def test_the_workload_walks_every_hook_and_is_the_same_traced(runs):
    untraced = _outcomes(runs, "untraced")["none"]
    traced = _outcomes(runs, "traced")["none"]
    # The workload: a retried API call, a refused connect, HTTPS, connections closed.
    assert untraced["servers"] == {"api": [2, 4], "web": [2, 4], "proxy": [1, 1]}
    assert untraced["seen"][3][0] == "EndpointConnectionError"
    assert _same(traced, untraced) and traced["warned"] == []
    [listing] = [run for run in runs if "hooks" in run]
    assert listing["spans"] > 0
    assert {"botocore.call", "pool.urlopen", "proxy.tunnel", "dns.getaddrinfo"} <= set(
        listing["hooks"]
    )


@pytest.mark.parametrize("phase", ["start", "finish"])
def test_a_fault_in_any_hook_changes_nothing_and_warns_once_naming_it(runs, phase):
    untraced = _outcomes(runs, "untraced")["none"]
    [listing] = [run for run in runs if "hooks" in run]
    faulted = _outcomes(runs, phase)
    assert set(faulted) == set(listing["hooks"])
    for hook, run in faulted.items():
        assert _same(run, untraced), hook
        assert run["warned"] == [hook]


def test_a_fault_in_any_reader_of_the_ledger_changes_nothing_and_warns_once(runs):
    untraced = _outcomes(runs, "untraced")["none"]
    faulted = _outcomes(runs, "reader")
    readers = {where.partition(".")[0] for where in faulted}
    assert readers == {"SpanView", "Diagnosis", "ConnectionMetrics", "ConsoleView", "Recorder"}
    assert {"Diagnosis.attempt_ended", "SpanView.call_started", "ConsoleView.call_ended"} <= set(
        faulted
    )
    for where, run in faulted.items():
        assert _same(run, untraced), where
        assert run["warned"] == [where]


def test_a_layer_with_a_target_missing_is_left_out_whole(runs):
    untraced = _outcomes(runs, "untraced")["none"]
    [missing] = _outcomes(runs, "missing").values()
    assert _same(missing, untraced)
    assert missing["warned"] == ["patching pool"]
    # None of the pool layer's hooks stayed, so none records half the facts; the others do.
    key = "hooks without HTTPSConnection"
    [hooks] = [run[key] for run in runs if key in run]
    assert not [hook for hook in hooks if hook.startswith(("pool.", "connection."))]
    assert {"botocore.call", "tls.handshake"} <= set(hooks)
