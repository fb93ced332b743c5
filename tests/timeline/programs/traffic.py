"""urllib3 traffic of a known shape, for the HTML timeline's tests.

    python traffic.py BUSY_URL IDLE_URL CLOSING_URL REFUSED_URL

- BUSY: 4 threads, 5 requests each, through one pool of 2 connections that does not block:
  the pool is too small for the threads, and discards what it cannot keep;
- IDLE: 3 requests 0.5 s apart, to a server that closes connections idle for 0.2 s;
- CLOSING: 2 requests, to a server that answers ``Connection: close``;
- REFUSED: 1 request to a port that refuses connections (no retry).

Every query carries a secret value, which must not reach the page.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

import urllib3

BUSY_THREADS, BUSY_REQUESTS = 4, 5
IDLE_REQUESTS, IDLE_PAUSE = 3, 0.5
CLOSING_REQUESTS = 2
SECRET = "s3cr3t-value"


def main() -> int:
    busy, idle, closing, refused = sys.argv[1:5]
    http = urllib3.PoolManager(maxsize=2, block=False, retries=False)

    def worker() -> None:
        for number in range(BUSY_REQUESTS):
            http.request("GET", f"{busy}/items/{number}?token={SECRET}")

    threads = [threading.Thread(target=worker) for _ in range(BUSY_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for number in range(IDLE_REQUESTS):
        if number:
            time.sleep(IDLE_PAUSE)
        http.request("GET", f"{idle}/ping?token={SECRET}")
    for _ in range(CLOSING_REQUESTS):
        http.request("GET", f"{closing}/once?token={SECRET}")
    with contextlib.suppress(urllib3.exceptions.HTTPError):
        http.request("GET", f"{refused}/never")
    print("traffic done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
