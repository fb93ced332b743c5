"""Calls DynamoDB's ListTables on one client, N times (argv[2], default 2), at argv[1].

Prints its pid, so tests can check that conntrace-run exec'd it in place.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    import boto3

    endpoint = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    for _ in range(count):
        client.list_tables()
    print(f"calls done pid={os.getpid()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
