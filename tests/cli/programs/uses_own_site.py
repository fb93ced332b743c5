"""Reports whether its own sitecustomize ran, and makes one call."""

import os
import sys

import urllib3

print(f"own sitecustomize: {os.environ.get('OWN_SITECUSTOMIZE', 'missing')}", flush=True)
urllib3.PoolManager().request("GET", sys.argv[1])
