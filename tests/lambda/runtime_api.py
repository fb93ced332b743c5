"""A small Lambda Runtime API on 127.0.0.1, for driving the real runtime interface client.

It speaks the part of the API that a Python runtime uses: ``GET .../invocation/next``
(long-polls until the test queues an invocation), ``POST .../invocation/{id}/response``,
``POST .../invocation/{id}/error`` and ``POST .../init/error``. Each invocation records
when it was handed out and what came back, so tests can compare with what the traces say.
"""

from __future__ import annotations

import itertools
import json
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

_PREFIX = "/2018-06-01/runtime"
ACCOUNT = "123456789012"
REGION = "us-east-1"
FUNCTION = "orders"


def function_arn(name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


@dataclass
class Outcome:
    """What the runtime posted for one invocation."""

    kind: str  # "response" or "error"
    body: bytes
    headers: dict[str, str]
    at: float  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Invocation:
    request_id: str
    event: Any
    function_arn: str
    deadline_ms: int
    delivered_at: float | None = None
    outcome: Outcome | None = None
    # Whatever ``on_outcome`` returned, computed before the runtime was answered.
    seen_at_outcome: Any = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait(self, timeout: float = 30.0) -> Outcome:
        if not self._done.wait(timeout):
            raise TimeoutError(f"no response for invocation {self.request_id} in {timeout}s")
        assert self.outcome is not None
        return self.outcome


class RuntimeApi:
    """Queue invocations with ``invoke``; the runtime picks them up in order.

    ``on_outcome(invocation)`` runs when a response or error arrives, before the runtime
    gets its ``202``: what it returns is kept as ``invocation.seen_at_outcome``.
    """

    def __init__(self, on_outcome: Callable[[Invocation], Any] | None = None) -> None:
        self.on_outcome = on_outcome
        self.invocations: dict[str, Invocation] = {}
        self.init_errors: list[Any] = []
        self.next_polls = 0
        self.first_poll_at: float | None = None
        self._pending: queue.Queue[Invocation] = queue.Queue()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._polled = threading.Condition()
        api = self

        class Handler(_Handler):
            owner = api

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        """What ``AWS_LAMBDA_RUNTIME_API`` takes."""
        return f"127.0.0.1:{self.port}"

    def invoke(
        self,
        event: Any = None,
        timeout_s: float = 60.0,
        qualifier: str | None = None,
    ) -> Invocation:
        """Queue one invocation whose deadline is ``timeout_s`` from now."""
        invocation = Invocation(
            request_id=f"req-{next(self._ids):04d}-{time.monotonic_ns() % 10**9:09d}",
            event={} if event is None else event,
            function_arn=function_arn(FUNCTION, qualifier),
            deadline_ms=int((time.time() + timeout_s) * 1000),
        )
        self.invocations[invocation.request_id] = invocation
        self._pending.put(invocation)
        return invocation

    def wait_for_poll(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the runtime asked for its ``count``-th invocation."""
        with self._polled:
            if not self._polled.wait_for(lambda: self.next_polls >= count, timeout):
                raise TimeoutError(f"the runtime made {self.next_polls} of {count} polls")

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    # --- called by the handler threads ---

    def _next(self) -> Invocation | None:
        with self._polled:
            self.next_polls += 1
            if self.first_poll_at is None:
                self.first_poll_at = time.monotonic()
            self._polled.notify_all()
        while not self._stopping.is_set():
            try:
                invocation = self._pending.get(timeout=0.2)
            except queue.Empty:
                continue
            invocation.delivered_at = time.monotonic()
            return invocation
        return None

    def _finish(self, request_id: str, kind: str, body: bytes, headers: dict[str, str]) -> bool:
        invocation = self.invocations.get(request_id)
        if invocation is None:
            return False
        outcome = Outcome(kind, body, headers, time.monotonic())
        if self.on_outcome is not None:
            invocation.seen_at_outcome = self.on_outcome(invocation)
        invocation.outcome = outcome
        invocation._done.set()
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A runtime process ended by the test leaves its long poll unanswerable.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: RuntimeApi
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm and the
    # client's delayed ACK hold each answer back by about 40 ms.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if self.path != f"{_PREFIX}/invocation/next":
            self._answer(404, {"errorMessage": f"unknown path {self.path}"})
            return
        invocation = self.owner._next()
        if invocation is None:
            self._answer(500, {"errorMessage": "runtime API stopping"})
            return
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
        }
        self._answer(200, invocation.event, headers)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path[len(_PREFIX) :].strip("/").split("/")
        if parts == ["init", "error"]:
            self.owner.init_errors.append(json.loads(body or b"null"))
            self._answer(202, {"status": "OK"})
            return
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            headers = {name.lower(): value for name, value in self.headers.items()}
            if self.owner._finish(parts[1], parts[2], body, headers):
                self._answer(202, {"status": "OK"})
                return
        self._answer(404, {"errorMessage": f"unknown path {self.path}"})

    def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
