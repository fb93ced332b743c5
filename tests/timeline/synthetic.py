"""A large run without a network: the ledger's facts, told as the layers tell them.

``run`` makes ``requests`` requests over ``connections`` connections of one pool (every
call traced, with its own trace id: the most the page has to hold) and returns the
diagnosis and timeline that read them.
"""

from __future__ import annotations

import random

from conntrace import attributes as A
from conntrace import ledger
from conntrace.findings import Diagnosis
from conntrace.ledger import DNS, KEPT, TCP, TLS, Attempt, Call, Connection, Pool, Setup, Step
from conntrace.timeline import Timeline

MS = 1_000_000


def run(requests: int, connections: int, base_ns: int) -> tuple[Diagnosis, Timeline]:
    diagnosis = Diagnosis(annotate=False)
    timeline = Timeline()
    ledger.add_sink(diagnosis)
    ledger.add_sink(timeline)
    try:
        pool = Pool("https", "big.example", 443, connections)
        ledger.pool_created(pool)
        opened = [_open(pool, index, base_ns + index * MS) for index in range(connections)]
        rounds = requests // connections
        for number in range(requests):
            lane = number % connections
            round_ = number // connections
            connection, setup = opened[lane]
            start = setup.end_ns + round_ * 6 * MS + (lane % 7) * 100_000
            _request(pool, connection, setup if round_ == 0 else None, start, number, round_)
        assert rounds * connections == requests
    finally:
        ledger.remove_sink(diagnosis)
        ledger.remove_sink(timeline)
    return diagnosis, timeline


def _open(pool: Pool, index: int, start: int) -> tuple[Connection, Setup]:
    connection = Connection(pool)
    setup = Setup(
        pool.host,
        pool.port,
        A.REASON_FIRST if index == 0 else A.REASON_POOL_BUSY,
        pool.max_size,
        start,
    )
    at = start
    for name, cost in ((DNS, 2 * MS), (TCP, 3 * MS), (TLS, 8 * MS)):
        step = Step(name, at)
        step.end_ns = at = at + cost
        setup.steps.append(step)
    setup.end_ns = at
    ledger.connection_opened(setup, connection)
    return connection, setup


def _request(
    pool: Pool, connection: Connection, setup: Setup | None, start: int, number: int, round_: int
) -> None:
    call = Call("S3.GetObject", {})
    ledger.call_started(call)
    attempt = Attempt(call, pool, "GET", f"/bucket/object-{number % 5000}?versionId=v{number}")
    call.attempts.append(attempt)
    attempt.start_ns = start - (setup.end_ns - setup.start_ns if setup is not None else 0)
    attempt.connection = connection
    ledger.checked_out(pool, connection)
    if setup is not None:
        attempt.setup = setup
        attempt.reason = setup.reason
    else:
        attempt.reused = True
        attempt.idle_ms = 1.0
    connection.requests += 1
    attempt.request_number = connection.requests
    attempt.status = 200
    attempt.exchanged = True
    attempt.end_ns = start + 5 * MS
    call.sampled = True
    call.trace_id = random.getrandbits(128)
    attempt.span_id = random.getrandbits(64)
    connection.released_ns = attempt.end_ns
    ledger.returned(pool, connection, KEPT)
    ledger.attempt_ended(attempt)
    ledger.call_ended(call)
