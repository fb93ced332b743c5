"""Real local servers for the tests: HTTP/1.1 with keep-alive, optionally TLS, on 127.0.0.1.

The server counts what conntrace claims to see from the client side: TCP connections
accepted (by the client's port) and requests served on each, so tests can compare.
Each response goes out in one write, to stay clear of Nagle + delayed ACK stalls.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False
    # Close the connection without answering, as a crashed server would.
    drop: bool = False
    # Send part of the status line, then reset the connection (RST, not FIN).
    reset: bool = False
    # Send the headers and half the body, then close: a truncated body.
    truncate: bool = False
    # Wait this long before answering (a stalled read for a client with a short timeout).
    delay: float = 0.0
    # Answer in HTTP/1.0 (without keep-alive: the connection closes after the response).
    http_1_0: bool = False


@dataclass
class ServedConnection:
    client_port: int
    requests: int = 0


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


class LocalServer:
    """Answers every request with ``respond(request)``; by default a 200 with ``{}``.

    It listens on 127.0.0.1 only; ``host_name`` is the name its ``url`` uses for it
    (``localhost`` resolves through /etc/hosts, never through DNS).
    ``tls_delay`` and ``accept_delay`` hold a new connection that long before the TLS
    handshake or the first read, as a slow or distant server would.
    ``idle_timeout`` closes a connection that has been idle that long, as a server or a
    NAT gateway does; ``close_after_response`` answers with ``Connection: close``.
    """

    def __init__(
        self,
        respond: Callable[[Request], Response] | None = None,
        tls: ssl.SSLContext | None = None,
        idle_timeout: float | None = None,
        close_after_response: bool = False,
        host_name: str = "127.0.0.1",
        tls_delay: float = 0.0,
        accept_delay: float = 0.0,
    ) -> None:
        self.host_name = host_name
        self.tls_delay = tls_delay
        self.accept_delay = accept_delay
        self.respond = respond or (lambda request: Response())
        self.tls = tls
        self.idle_timeout = idle_timeout
        self.close_after_response = close_after_response
        self.connections: list[ServedConnection] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._stopped = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host_name}:{self.port}"

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _close(sock)

    def close_idle_connections(self) -> None:
        """Close every open connection from the server side, as an idle-timeout would."""
        with self._lock:
            for sock in list(self._open):
                _close(sock)

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                sock, address = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            record = ServedConnection(client_port=address[1])
            with self._lock:
                self.connections.append(record)
            threading.Thread(target=self._serve, args=(sock, record), daemon=True).start()

    def _serve(self, sock: socket.socket, record: ServedConnection) -> None:
        with self._lock:
            self._open.add(sock)
        try:
            time.sleep(self.accept_delay)
            if self.tls is not None:
                time.sleep(self.tls_delay)
                sock = self.tls.wrap_socket(sock, server_side=True)
                with self._lock:
                    self._open.add(sock)
            reader = sock.makefile("rb")
            while True:
                sock.settimeout(self.idle_timeout)
                request = _read_request(reader)
                if request is None:
                    return
                sock.settimeout(None)
                with self._lock:
                    record.requests += 1
                    self.requests.append(request)
                response = self.respond(request)
                time.sleep(response.delay)
                if response.drop:
                    return
                close = response.close or self.close_after_response or response.http_1_0
                encoded = _encode(response, close)
                if response.reset:
                    sock.sendall(encoded[:5])
                    # SO_LINGER with a zero timeout makes close() send RST.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                    return
                if response.truncate:
                    sock.sendall(encoded[: len(encoded) - len(response.body) // 2])
                    return
                sock.sendall(encoded)
                if close:
                    return
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            with self._lock:
                self._open.discard(sock)
            _close(sock)


def _read_request(reader) -> Request | None:
    head = read_head(reader)
    if head is None:
        return None
    method, target, headers = head
    length = int(headers.get("content-length", "0") or 0)
    body = reader.read(length) if length else b""
    return Request(method, target, headers, body)


def read_head(reader) -> tuple[str, str, dict[str, str]] | None:
    """A request's line and headers (names lower-cased); None at the end of the stream."""
    line = reader.readline()
    if not line:
        return None
    method, target, _version = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _encode(response: Response, close: bool) -> bytes:
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "Content-Length": str(len(response.body)),
        "x-amzn-RequestId": f"req-{time.monotonic_ns()}",
        **response.headers,
    }
    if close and not response.http_1_0:
        headers["Connection"] = "close"
    version = "HTTP/1.0" if response.http_1_0 else "HTTP/1.1"
    head = f"{version} {response.status} {_REASONS.get(response.status, 'Status')}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode("latin-1") + b"\r\n" + response.body


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def statuses(*codes: int) -> Callable[[Request], Response]:
    """Answer with these status codes in turn, then 200 for ever."""
    remaining = list(codes)
    lock = threading.Lock()

    def respond(request: Request) -> Response:
        with lock:
            code = remaining.pop(0) if remaining else 200
        body = b"{}" if code < 400 else b'{"__type":"InternalServerError","message":"boom"}'
        return Response(status=code, body=body)

    return respond


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def run_without_network(script: str, folder: Path) -> Any:
    """Run ``script`` in a new network namespace and return the JSON it prints.

    A name looked up there fails at once, and nothing leaves the machine: the way to test
    an unresolvable host without asking this machine's resolver.
    """
    import pytest

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"]).returncode != 0:
        pytest.fail("this test needs `unshare -n` (util-linux, run as root)")
    path = folder / "without_network.py"
    path.write_text(script)
    done = subprocess.run(
        [unshare, "-n", sys.executable, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
