"""COUNT calls of ``requests.get(URL)``: each makes a Session, so a pool, of its own.

argv: URL COUNT
"""

from __future__ import annotations

import sys

import requests


def main() -> int:
    url, count = sys.argv[1], int(sys.argv[2])
    for _ in range(count):
        requests.get(url, timeout=30).raise_for_status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
