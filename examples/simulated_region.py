"""A DynamoDB-style HTTPS endpoint on this machine that costs what a distant region costs.

A call to a real region pays a network round trip for the TCP handshake, one for each
TLS flight, and one for each request and its response. On loopback those take
microseconds, so this module puts the round trip back:

* every byte between client and endpoint passes a relay that holds it for half a round
  trip in each direction, so TLS flights and request/response exchanges cost what they
  cost over a real network;
* the kernel answers a loopback SYN at once, which no relay can slow down, so the TCP
  handshake's round trip is added in the client's ``socket.connect`` to these endpoints
  (and to nothing else).

What is not simulated: the DNS lookup (``localhost`` comes from /etc/hosts), the
service's own processing time (the endpoint answers at once), and bandwidth.
Everything listens on the loopback interface only.
"""

from __future__ import annotations

import itertools
import json
import selectors
import socket
import ssl
import tempfile
import threading
import time
from collections import deque
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

HOST = "localhost"

# --- the TCP handshake's round trip, on the client side ----------------------------------------

_slow_connects: dict[tuple[str, int], float] = {}
_original_connect: Callable[..., Any] | None = None


def _connect(sock: socket.socket, address: Any) -> Any:
    assert _original_connect is not None
    result = _original_connect(sock, address)
    if isinstance(address, tuple):
        delay = _slow_connects.get((str(address[0]), int(address[1])))
        if delay:
            # SYN out, SYN-ACK back: connect() returns one round trip later.
            time.sleep(delay)
    return result


def _slow_down_connects(address: tuple[str, int], rtt: float) -> None:
    global _original_connect
    if _original_connect is None:
        _original_connect = socket.socket.connect
        socket.socket.connect = _connect  # type: ignore[method-assign]
    _slow_connects[address] = rtt


# --- the relay: half a round trip each way ------------------------------------------------------


def _relay(client: socket.socket, backend: socket.socket, one_way: float) -> None:
    """Copy bytes both ways, each chunk delivered ``one_way`` seconds after it arrived."""
    peers = {client: backend, backend: client}
    queued: dict[socket.socket, deque[tuple[float, bytes]]] = {client: deque(), backend: deque()}
    with selectors.DefaultSelector() as selector:
        for sock in peers:
            selector.register(sock, selectors.EVENT_READ)
        reading = 2
        try:
            while reading or any(queued.values()):
                due = [chunks[0][0] for chunks in queued.values() if chunks]
                timeout = max(0.0, min(due) - time.monotonic()) if due else None
                for key, _ in selector.select(timeout):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data = sock.recv(65536)
                    # An empty chunk carries the end of the stream across, in order.
                    queued[peers[sock]].append((time.monotonic() + one_way, data))
                    if not data:
                        selector.unregister(sock)
                        reading -= 1
                now = time.monotonic()
                for destination, chunks in queued.items():
                    while chunks and chunks[0][0] <= now:
                        data = chunks.popleft()[1]
                        if data:
                            destination.sendall(data)
                        else:
                            destination.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # a reset on either side ends the connection, as it would on a network
        finally:
            client.close()
            backend.close()


# --- the service: answers DynamoDB's JSON protocol, at once ---------------------------------------


def _answer(target: str, body: bytes) -> bytes:
    operation = target.rsplit(".", 1)[-1]
    if operation == "GetItem":
        key = json.loads(body or b"{}").get("Key", {})
        return json.dumps({"Item": {**key, "plan": {"S": "free"}}}).encode()
    return b"{}"


def _serve(sock: socket.socket, tls: ssl.SSLContext, close_each: bool) -> None:
    """One HTTP/1.1 connection: keep-alive, or ``Connection: close`` on every response."""
    try:
        with tls.wrap_socket(sock, server_side=True) as conn, conn.makefile("rb") as reader:
            for number in itertools.count(1):
                request_line = reader.readline()
                if not request_line:
                    return
                headers = {}
                for line in iter(reader.readline, b"\r\n"):
                    if not line:
                        return
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", 0)))
                payload = _answer(headers.get("x-amz-target", ""), body)
                head = [
                    "HTTP/1.1 200 OK",
                    "Content-Type: application/x-amz-json-1.0",
                    f"Content-Length: {len(payload)}",
                    f"x-amzn-RequestId: demo-{id(sock):x}-{number}",
                    "Connection: close" if close_each else "Connection: keep-alive",
                ]
                # One write per response: no Nagle + delayed-ACK stall on the relay's side.
                conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                if close_each:
                    return
    except (OSError, ValueError):
        return


class Endpoint:
    """One simulated DynamoDB endpoint: ``https://localhost:<port>``."""

    def __init__(self, tls: ssl.SSLContext, rtt: float, close_each: bool) -> None:
        self.tls = tls
        self.rtt = rtt
        self.close_each = close_each
        self.connections = 0
        # Listen where the client's lookup of "localhost" leads first, so that its first
        # connect attempt is the one that succeeds.
        family, kind, proto, _, address = socket.getaddrinfo(HOST, 0, type=socket.SOCK_STREAM)[0]
        self._listener = socket.socket(family, kind, proto)
        self._listener.bind(address)
        self._listener.listen(128)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        _slow_down_connects(self.address, rtt)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def name(self) -> str:
        return f"{HOST}:{self.address[1]}"

    @property
    def url(self) -> str:
        return f"https://{self.name}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            near, far = socket.socketpair()
            threading.Thread(target=_relay, args=(client, near, self.rtt / 2), daemon=True).start()
            threading.Thread(
                target=_serve, args=(far, self.tls, self.close_each), daemon=True
            ).start()

    def close(self) -> None:
        _slow_connects.pop(self.address, None)
        self._listener.close()


class Region:
    """Endpoints sharing one local certificate authority; ``ca_file`` is what clients trust."""

    def __init__(self, rtt: float) -> None:
        try:
            import trustme
        except ImportError as error:
            raise SystemExit(
                "this demo needs trustme for its local certificates: pip install 'conntrace[demo]'"
            ) from error
        self.rtt = rtt
        self._stack = ExitStack()
        authority = trustme.CA()
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert(HOST).configure_cert(self._tls)
        folder = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="region-")))
        self.ca_file = str(folder / "ca.pem")
        authority.cert_pem.write_to_path(self.ca_file)

    def endpoint(self, close_each: bool = False) -> Endpoint:
        endpoint = Endpoint(self._tls, self.rtt, close_each)
        self._stack.callback(endpoint.close)
        return endpoint

    def __enter__(self) -> Region:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()
