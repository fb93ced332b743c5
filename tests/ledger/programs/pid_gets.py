"""COUNT GETs of URL/pid/PID on one requests.Session.

argv: URL COUNT
"""

from __future__ import annotations

import os
import sys

import requests


def main() -> int:
    url, count = sys.argv[1], int(sys.argv[2])
    with requests.Session() as session:
        for _ in range(count):
            session.get(f"{url}/pid/{os.getpid()}", timeout=30).raise_for_status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
