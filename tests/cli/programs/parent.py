"""Makes one call, then has a child Python process make its own: by subprocess (argv[2]
"subprocess") or by a forked multiprocessing worker ("fork")."""

import multiprocessing
import os
import subprocess
import sys

import calls
import urllib3


def child(endpoint: str) -> None:
    sys.argv = ["calls.py", endpoint, "2"]
    calls.main()


if __name__ == "__main__":
    parent_endpoint, how, child_endpoint = sys.argv[1:4]
    urllib3.PoolManager().request("GET", parent_endpoint)
    print(f"parent pid={os.getpid()}", flush=True)
    if how == "subprocess":
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([sys.executable, os.path.join(here, "calls.py"), child_endpoint], check=True)
    else:
        worker = multiprocessing.get_context("fork").Process(target=child, args=(child_endpoint,))
        worker.start()
        worker.join()
        assert worker.exitcode == 0, worker.exitcode
