"""Two GETs over HTTPS on one pool (argv[1]), trusting the CA in argv[2]."""

import sys

import urllib3

http = urllib3.PoolManager(ca_certs=sys.argv[2])
for _ in range(2):
    http.request("GET", sys.argv[1])
