"""Makes one call, says it is ready, and sleeps until a signal ends it."""

import os
import sys
import time

import urllib3

urllib3.PoolManager().request("GET", sys.argv[1])
print(f"ready pid={os.getpid()}", flush=True)
time.sleep(120)
