"""GETs argv[1] argv[2] times, over argv[3] threads (default 1) sharing one PoolManager."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import urllib3


def main() -> int:
    url, count = sys.argv[1], int(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    http = urllib3.PoolManager(maxsize=threads)
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(lambda _: http.request("GET", url).status, range(count)))
    print(f"calls done: {len(statuses)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
