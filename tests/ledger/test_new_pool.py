"""``requests.get`` makes a Session, so a pool, per call: every connection after the
first to that server is opened by a new pool, and the report counts the pools."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..servers import LocalServer
from .running import opened, traced


def test_each_requests_get_opens_its_connection_in_a_new_pool(
    server: Callable[..., LocalServer], tmp_path: Path
):
    local = server()

    run = traced("separate_gets.py", [local.url, "5"], tmp_path / "report.json")

    # The server saw five connections, one request on each.
    assert [c.requests for c in local.connections] == [1] * 5
    host = run.host(local.port)
    assert host["pools"] == 5, f"pools {host['pools']}, expected 5 (one per requests.get)"
    assert opened(host["connections_opened"]) == {"first": 1, "new_pool": 4}
    assert (host["requests"], host["reused"]) == (5, 0)
    totals = run.report["totals"]
    assert (totals["connections_opened"], totals["requests"]) == (5, 5)
    assert opened(totals["connections_by_reason"]) == {"first": 1, "new_pool": 4}
