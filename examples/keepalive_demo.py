"""The same DynamoDB calls three ways, against a simulated region on this machine.

    python examples/keepalive_demo.py
    conntrace-run --exporter console python examples/keepalive_demo.py

(a) one boto3 client, reused for every call: its pool keeps the connection alive;
(b) the same, but the endpoint answers ``Connection: close``: every call opens a new one;
(c) a new client for every call, as a Lambda handler that builds its own client does.

It prints the three timings side by side. Under conntrace, each call shows whether its
connection was reused or new, why, and what DNS, TCP and TLS cost; the summary at exit
has one line per endpoint, that is one per scenario. Every round trip costs ``--rtt-ms``
(see simulated_region.py for what is simulated and what is not).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import boto3
from opentelemetry import trace
from simulated_region import Endpoint, Region

TABLE = "users"
tracer = trace.get_tracer("keepalive-demo")


def dynamodb(endpoint: Endpoint, ca_file: str) -> Any:
    # Fixed credentials and region: the demo never looks for real ones or leaves the machine.
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint.url,
        region_name="us-east-1",
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
        verify=ca_file,
    )


def get_user(client: Any, number: int) -> None:
    key = {"pk": {"S": f"user-{number}"}}
    item = client.get_item(TableName=TABLE, Key=key)["Item"]
    if item["pk"] != key["pk"]:
        raise RuntimeError(f"the endpoint answered for {item['pk']}, not {key['pk']}")


@dataclass
class Scenario:
    label: str
    endpoint: Endpoint
    seconds: float = 0.0

    def run(self, calls: int, call: Callable[[int], None]) -> None:
        with tracer.start_as_current_span(f"scenario {self.label}"):
            started = time.perf_counter()
            for number in range(calls):
                call(number)
            self.seconds = time.perf_counter() - started


def positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=positive(int), default=100, help="calls per scenario")
    parser.add_argument(
        "--rtt-ms", type=positive(float), default=20.0, help="simulated round trip (ms)"
    )
    options = parser.parse_args(argv)

    print(
        f"{options.calls} DynamoDB GetItem calls, three ways, against a simulated region:\n"
        f"{options.rtt_ms:g} ms per round trip (TCP handshake, each TLS flight, each request);"
        " DNS from /etc/hosts.\n",
        flush=True,
    )
    with Region(rtt=options.rtt_ms / 1000) as region:
        reused = Scenario("(a) one client, reused", region.endpoint())
        closing = Scenario("(b) Connection: close", region.endpoint(close_each=True))
        per_call = Scenario("(c) client per call", region.endpoint())

        # (a) and (b) build their client before the clock starts, as a program does once.
        kept = dynamodb(reused.endpoint, region.ca_file)
        reused.run(options.calls, lambda number: get_user(kept, number))
        closed = dynamodb(closing.endpoint, region.ca_file)
        closing.run(options.calls, lambda number: get_user(closed, number))
        per_call.run(
            options.calls,
            lambda number: get_user(dynamodb(per_call.endpoint, region.ca_file), number),
        )

    print(f"{'':24}{'endpoint':>17}{'total':>10}{'per call':>11}{'connections':>13}")
    for scenario in (reused, closing, per_call):
        print(
            f"{scenario.label:24}{scenario.endpoint.name:>17}{scenario.seconds:>8.2f} s"
            f"{scenario.seconds / options.calls * 1000:>8.1f} ms"
            f"{scenario.endpoint.connections:>13}"
        )
    base = reused.seconds
    print(
        f"\nCompared with (a), (b) took {closing.seconds / base:.1f}x the time and (c)"
        f" {per_call.seconds / base:.1f}x. Connections are counted by the endpoint."
    )
    if "conntrace" not in sys.modules:
        print("See why: conntrace-run --exporter console python examples/keepalive_demo.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
