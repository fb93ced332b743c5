"""A parent that makes GETs itself, in a fork multiprocessing pool of 3, and in a child
Python process (``subprocess.run``). Every GET names its sender's pid: URL/pid/PID.

argv: URL
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import requests
import urllib3

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pid_gets.py")


def get(url: str, times: int) -> int:
    with requests.Session() as session:
        for _ in range(times):
            session.get(f"{url}/pid/{os.getpid()}", timeout=30).raise_for_status()
    return os.getpid()


def main() -> int:
    url = sys.argv[1]
    manager = urllib3.PoolManager()
    for _ in range(2):
        assert manager.request("GET", f"{url}/pid/{os.getpid()}").status == 200
    with multiprocessing.get_context("fork").Pool(3) as pool:
        pool.starmap(get, [(url, 3)] * 6, chunksize=1)
        # Workers end as they do after a normal pool's work: closed and joined, not killed.
        pool.close()
        pool.join()
    subprocess.run([sys.executable, CHILD, url, "4"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
