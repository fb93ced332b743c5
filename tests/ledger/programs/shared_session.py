"""THREADS threads share one requests.Session (its default pool keeps 10 connections), each
making PER_THREAD GETs to URL; writes urllib3's "pool is full" warning count to OUT.

argv: URL THREADS PER_THREAD OUT
"""

from __future__ import annotations

import sys
import threading

import pool_warnings
import requests


def main() -> int:
    url, threads, per_thread, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    warnings = pool_warnings.install()
    session = requests.Session()
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                response = session.get(url, timeout=30)
                response.raise_for_status()
        except BaseException as error:
            failures.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    session.close()
    if failures:
        raise failures[0]
    pool_warnings.write(warnings, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
