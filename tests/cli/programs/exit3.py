"""Makes one call, then exits with status 3."""

import sys

import urllib3

urllib3.PoolManager().request("GET", sys.argv[1])
print("about to exit 3", flush=True)
sys.exit(3)
