"""A fact that arrives while a reader is taking another one, on the same thread."""

from __future__ import annotations

import threading
from typing import Any

import urllib3

from conntrace import ledger
from conntrace.ledger import BaseSink, Connection, Pool


class Locking(BaseSink):
    """A reader that holds a lock while it reads, as the diagnosis does; on the next pool it
    closes a connection, as urllib3's finalizer of a garbage-collected pool does at any
    allocation, here inside the reader."""

    def __init__(self, victim: Any) -> None:
        self.lock = threading.Lock()
        self.victim: Any = victim
        self.seen: list[str] = []

    def pool_created(self, pool: Pool) -> None:
        with self.lock:
            self.seen.append("pool_created")
            victim, self.victim = self.victim, None
            if victim is not None:
                victim.close()

    def connection_closed(self, connection: Connection, closed_ns: int) -> None:
        with self.lock:
            self.seen.append("connection_closed")


def test_a_fact_told_inside_a_reader_waits_for_it_instead_of_hanging_the_program(spans, server):
    first, second = server(), server()
    http = urllib3.PoolManager()
    assert http.request("GET", first.url).status == 200
    [victim] = list(http.connection_from_url(first.url).pool.queue)
    assert victim is not None and victim.sock is not None
    reader = Locking(victim)
    ledger.add_sink(reader)
    outcome: list[int] = []
    try:
        request = threading.Thread(
            target=lambda: outcome.append(urllib3.PoolManager().request("GET", second.url).status),
            daemon=True,
        )
        request.start()
        request.join(timeout=10)
        assert not request.is_alive(), "the program hung on conntrace's reader lock"
    finally:
        ledger.remove_sink(reader)

    assert outcome == [200]
    # The close waited until the reader was done with the new pool, then reached it (the
    # second manager's own connection may close after, when it is collected).
    assert reader.seen[:2] == ["pool_created", "connection_closed"]
    assert victim.sock is None


def test_facts_told_while_a_view_reads_under_its_lock_wait_until_it_is_done(spans, server):
    local = server()
    http = urllib3.PoolManager()
    assert http.request("GET", local.url).status == 200
    [victim] = list(http.connection_from_url(local.url).pool.queue)
    reader = Locking(None)
    ledger.add_sink(reader)

    def read() -> None:
        # A view reading its counts under its lock (the findings at exit), while the garbage
        # collector closes a dropped pool's connection on this thread.
        with ledger.facts_wait(), reader.lock:
            victim.close()
            reader.seen.append("read")

    try:
        reading = threading.Thread(target=read, daemon=True)
        reading.start()
        reading.join(timeout=10)
        assert not reading.is_alive(), "the program hung on conntrace's reader lock"
    finally:
        ledger.remove_sink(reader)

    assert reader.seen == ["read", "connection_closed"]
