"""A minimal OTLP/gRPC trace receiver that only counts spans, in a process of its own.

tests/otlp_receiver.py decodes every span into Python objects, which is right for tests
and too slow for 10,000 spans a second on a shared core. This one lets gRPC parse each
request (in C) and adds up the spans, so the receiver is never what limits the exporter.

``python -m benchmarks.receiver`` prints ``{"port": N}`` and then answers ``count`` on its
standard input with ``{"spans": ..., "requests": ...}``; it ends when its input closes.
"""

from __future__ import annotations

import json
import sys
import threading
from concurrent import futures
from typing import Any

from .child import ChildProcess


def serve() -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    counts = {"spans": 0, "requests": 0}
    lock = threading.Lock()

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:
            spans = sum(
                len(scope.spans) for resource in request.resource_spans
                for scope in resource.scope_spans
            )  # fmt: skip
            with lock:
                counts["spans"] += spans
                counts["requests"] += 1
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            with lock:
                print(json.dumps(counts), flush=True)
    server.stop(grace=None)


class ReceiverProcess(ChildProcess):
    def __init__(self) -> None:
        super().__init__("benchmarks.receiver")
        self.port: int = self.hello["port"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self) -> dict[str, int]:
        return self.ask("count")


if __name__ == "__main__":
    serve()
