"""Ground truth under load: what conntrace reports equals what the server counted.

CI runs 32 threads x 50 calls; CONNTRACE_FULL_TESTS=1 runs the full 32 x 500.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

from conntrace import attributes as A

from ..conftest import dynamodb

THREADS = 32
CALLS = 500 if os.environ.get("CONNTRACE_FULL_TESTS") == "1" else 50


def test_counts_equal_the_servers_under_load(spans, server):
    local = server()
    client = dynamodb(local.url, max_pool_connections=10)
    client.list_tables()  # build the client's internals once, before the threads race
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(CALLS):
                client.list_tables()
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "deadlock"
    assert failures == []

    total = THREADS * CALLS + 1
    attempts = spans.attempts
    assert len(spans.named("DynamoDB.ListTables")) == total
    assert len(attempts) == len(local.requests) == total

    # conntrace's connections are the server's: same count, same requests on each,
    # matched by the client port.
    port_of = {}
    for setup in spans.setups:
        [tcp] = [s for s in spans.children(setup) if s.name.startswith("socket connect")]
        port_of[setup.attributes[A.CONNECTION_ID]] = tcp.attributes[A.NETWORK_LOCAL_PORT]
    assert len(port_of) == len(local.connections)
    requests_per_port = {conn.client_port: conn.requests for conn in local.connections}
    assert Counter(port_of[a.attributes[A.CONNECTION_ID]] for a in attempts) == requests_per_port

    # Each connection's requests are numbered 1..n, none twice, none missing.
    numbers: dict[int, list[int]] = {}
    for attempt in attempts:
        numbers.setdefault(attempt.attributes[A.CONNECTION_ID], []).append(
            attempt.attributes[A.CONNECTION_REQUEST_NUMBER]
        )
    assert all(sorted(seen) == list(range(1, len(seen) + 1)) for seen in numbers.values())

    # Every new connection says why, and no reason is made up.
    reasons = Counter(
        a.attributes[A.CONNECTION_REASON] for a in attempts if not a.attributes[A.CONNECTION_REUSED]
    )
    assert sum(reasons.values()) == len(local.connections)
    assert reasons[A.REASON_FIRST] == 1
    assert set(reasons) <= {A.REASON_FIRST, A.REASON_POOL_BUSY, A.REASON_POOL_DISCARDED}
