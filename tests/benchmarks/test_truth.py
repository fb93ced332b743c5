"""Delays injected on purpose are what conntrace's spans report, give or take.

The benchmark checks the 2 ms target on a full run; here the tolerance is generous, as
the machine running the tests is shared. Each phase's error is its span's duration minus
(injected delay + the same phase's duration against an undelayed server).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from benchmarks import truth

DELAY_MS = 50.0
TOLERANCE_MS = 15.0


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    return truth.measure(DELAY_MS, repeats=3)


@pytest.mark.parametrize("phase", [truth.TLS, truth.FIRST_BYTE])
def test_injected_delay_is_reported(measured: dict[str, Any], phase: str) -> None:
    found = measured["phases"][phase]
    assert found["injected_ms"] == DELAY_MS
    assert len(found["reported_ms"]) == 3
    assert abs(found["median_error_ms"]) <= TOLERANCE_MS
    assert all(reported >= DELAY_MS for reported in found["reported_ms"])


@pytest.mark.skipif(os.geteuid() != 0, reason="holding SYNs back needs root (CAP_NET_ADMIN)")
def test_held_back_tcp_handshake_is_reported(measured: dict[str, Any]) -> None:
    # Root is not enough: holding SYNs back also needs iptables and an unshared network.
    reason = measured.get("not_measured", {}).get(truth.TCP)
    if reason is not None:
        pytest.skip(f"TCP handshake not measured here: {reason}")
    found = measured["phases"][truth.TCP]
    assert abs(found["median_error_ms"]) <= TOLERANCE_MS
    assert all(reported >= DELAY_MS for reported in found["reported_ms"])
