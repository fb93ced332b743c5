"""Two GETs on one pool (argv[1]), argv[2] seconds apart."""

import sys
import time

import urllib3

http = urllib3.PoolManager()
http.request("GET", sys.argv[1])
time.sleep(float(sys.argv[2]))
http.request("GET", sys.argv[1])
