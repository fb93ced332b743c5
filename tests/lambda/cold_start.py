"""Measure what the layer adds to a cold start, on this machine, under the real runtime client.

    python3 lambda/build_layer.py --arch x86_64 --python 3.9 --python 3.11
    python -m tests.lambda.cold_start dist/lambda/conntrace-layer-x86_64.zip --runs 15

Each run starts a fresh execution environment (``python -m awslambdaric app.reuse``), once
as Lambda starts a function without the layer and once through the layer's wrapper, in
turn. For each it takes, as Lambda reports them:

* init: from starting the process to its first ``/invocation/next`` (the interpreter, the
  runtime client, the handler module with boto3 and its client; with the layer, also
  conntrace's start-up);
* first invocation: from handing over the event to the response (the first DynamoDB call
  on moto's server; with the layer, also the first export: the OTLP exporter is imported
  then, and the spans are sent to a local OTLP receiver before the response);
* warm invocation: the same, for the second event.

It prints the median and the spread of each. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from ..conftest import create_table, dynamodb
from ..otlp_receiver import OtlpReceiver
from ..servers import free_port
from .conftest import HANDLERS, PYTHON, WRAPPER, lambda_environ
from .runtime_api import RuntimeApi


def _unpack(layer: Path, into: Path) -> Path:
    if layer.is_dir():
        return layer
    with zipfile.ZipFile(layer) as archive:
        for info in archive.infolist():
            archive.extract(info, into)
            (into / info.filename).chmod(info.external_attr >> 16 & 0o777)
    return into


def _one_run(opt: Path | None, environ: dict[str, str]) -> tuple[float, float, float]:
    api = RuntimeApi()
    command = [PYTHON, "-m", "awslambdaric", "app.reuse"]
    if opt is not None:
        command.insert(0, str(opt / WRAPPER.name))
    env = {**lambda_environ(api, "app.reuse"), **environ}
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=HANDLERS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        api.wait_for_poll(1, timeout=60)
        assert api.first_poll_at is not None
        init = api.first_poll_at - started
        first, warm = (api.invoke({"key": "a"}) for _ in range(2))
        durations = []
        for invocation in (first, warm):
            outcome = invocation.wait(60)
            assert outcome.kind == "response", outcome.body
            assert invocation.delivered_at is not None
            durations.append(outcome.at - invocation.delivered_at)
        return init, durations[0], durations[1]
    finally:
        process.terminate()
        process.wait(10)
        api.stop()


def _summary(name: str, values: list[float]) -> str:
    ms = sorted(value * 1000 for value in values)
    return (
        f"{name:<18} median {statistics.median(ms):7.1f} ms   (min {ms[0]:.1f}, max {ms[-1]:.1f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lambda.cold_start")
    parser.add_argument("layer", type=Path, help="the layer zip, or the directory it unpacks to")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    table = f"orders-{uuid.uuid4().hex[:8]}"
    client = dynamodb(endpoint)
    create_table(client, table)
    client.put_item(TableName=table, Item={"pk": {"S": "a"}})
    function_env = {"DYNAMODB_ENDPOINT": endpoint, "TABLE_NAME": table}
    results: dict[str, list[tuple[float, float, float]]] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as temporary, OtlpReceiver(protocol="http") as receiver:
        opt = _unpack(args.layer.resolve(), Path(temporary))
        traced_env = {**function_env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        _one_run(None, function_env)  # warm the page cache for both
        _one_run(opt, traced_env)
        for _ in range(args.runs):
            results["without"].append(_one_run(None, function_env))
            results["with"].append(_one_run(opt, traced_env))
    moto.stop()

    print(f"Python {sys.version.split()[0]}, {args.runs} runs each, {os.cpu_count()} CPUs")
    for label, runs in results.items():
        print(f"-- {label} the layer")
        for index, name in enumerate(("init", "first invocation", "warm invocation")):
            print("  " + _summary(name, [run[index] for run in runs]))
    for index, name in enumerate(("init", "first invocation", "warm invocation")):
        added = statistics.median(r[index] for r in results["with"]) - statistics.median(
            r[index] for r in results["without"]
        )
        print(f"added by the layer, {name}: {added * 1000:+.1f} ms (difference of medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
