"""More threads than pool slots: urllib3 discards the connections that come back to a full
pool. The ledger counts every discard even though it happens after the request's span has
ended (the body is read after ``urlopen`` returns), and the report says so: as many
discards as urllib3's own "Connection pool is full" warnings, a ``pool_too_small`` finding,
and a suggested pool size no smaller than the peak of requests the server answered at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..servers import LocalServer
from .running import Traced, traced
from .truth import InFlight, WSGIServer

THREADS = 20
POOL_SIZE = 10  # requests' HTTPAdapter and botocore's max_pool_connections, by default


def pool_full_warnings(path: Path) -> int:
    count: int = json.loads(path.read_text())["pool_full_warnings"]
    assert count > 0, "urllib3 discarded no connection: the program did not fill the pool"
    return count


def assert_pool_too_small(run: Traced, port: int, warnings: int, peak: int) -> None:
    assert peak > POOL_SIZE, f"the server never answered more than {peak} requests at once"
    host = run.host(port)
    assert host["discarded"] == warnings, (
        f"discarded {host['discarded']} in the report, urllib3 warned {warnings} times"
    )
    finding = run.finding("pool_too_small")
    assert finding["evidence"]["suggested_max_pool_connections"] >= peak, finding["evidence"]
    assert host["max_concurrency"] >= peak, (host["max_concurrency"], peak)


def assert_wire_counts(run: Traced, port: int, connections: int, requests: int) -> None:
    host = run.host(port)
    totals = run.report["totals"]
    assert (totals["connections_opened"], totals["requests"]) == (connections, requests), (
        f"report: {totals['connections_opened']} connections, {totals['requests']} requests; "
        f"server: {connections} connections accepted, {requests} requests"
    )
    assert sum(host["connections_opened"].values()) == connections, host["connections_opened"]
    assert host["requests"] == requests


def test_a_session_shared_by_more_threads_than_its_pool(
    server: Callable[..., LocalServer], tmp_path: Path
):
    # Slow enough answers that all the threads have a request in flight at once.
    answers = InFlight(delay=0.03)
    local = server(respond=answers)
    warnings_file = tmp_path / "warnings.json"

    run = traced(
        "shared_session.py",
        [local.url, str(THREADS), "8", str(warnings_file)],
        tmp_path / "report.json",
    )

    assert len(local.requests) == THREADS * 8
    assert_pool_too_small(run, local.port, pool_full_warnings(warnings_file), answers.peak)
    assert_wire_counts(run, local.port, len(local.connections), len(local.requests))


def test_an_s3_download_with_more_threads_than_the_client_pool(
    moto_server: Callable[..., WSGIServer], tmp_path: Path
):
    s3 = moto_server(delay=0.02, threads=24)
    warnings_file = tmp_path / "warnings.json"
    size, chunk = 8 * 1024 * 1024, 128 * 1024

    run = traced(
        "s3_download.py",
        [
            s3.url,
            "ledger-download",
            str(size),
            str(chunk),
            str(THREADS),
            str(tmp_path / "object.bin"),
            str(warnings_file),
        ],
        tmp_path / "report.json",
    )

    # CreateBucket, PutObject, then HeadObject and one ranged GET per chunk (or more).
    assert s3.requests >= 2 + size // chunk
    assert_pool_too_small(run, s3.port, pool_full_warnings(warnings_file), s3.app.peak)
    assert_wire_counts(run, s3.port, s3.accepted, s3.requests)
