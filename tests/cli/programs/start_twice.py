"""Starts conntrace again by hand, and runs the bootstrap again: neither sets up a second time."""

import importlib
import os
import sys

import urllib3

from conntrace import config, ledger, sdk

first = sdk.current()
again = sdk.start(config.load_config(os.environ))
importlib.import_module("conntrace.bootstrap.sitecustomize")
views = [sink for sink in ledger.sinks if type(sink).__name__ == "ConsoleView"]
print(f"same session: {first is again is sdk.current()}; console views: {len(views)}", flush=True)
urllib3.PoolManager().request("GET", sys.argv[1])
