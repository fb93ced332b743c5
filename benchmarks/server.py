"""The fast local server of the benchmarks: HTTP/1.1 keep-alive, optionally TLS, on 127.0.0.1.

It runs in a process of its own (``ServerProcess``), so that it never competes with the
client under test for the GIL. Every request gets the same answer, a DynamoDB ``GetItem``
response written in one ``sendall`` (no Nagle + delayed-ACK stall); the request is parsed
only as far as finding its end. A request that says ``Connection: close`` is answered
with ``Connection: close`` and the connection is closed, which is how the benchmarks make
the client open a new connection for every request.

For the truth-of-timings benchmark it can hold back the TLS handshake (once the
ClientHello is in) and the first byte of every response; a delayed TCP handshake needs
the kernel's help (see ``nfqueue.py``).

Run alone: ``python -m benchmarks.server [--tls-cert CERT --tls-key KEY]`` prints the
ports as one JSON line and serves until its standard input closes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import sys
import threading
import time

from .child import ChildProcess

ITEM = b'{"Item":{"id":{"S":"1"},"value":{"S":"benchmark"}}}'


def _response(close: bool) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/x-amz-json-1.0\r\n"
        f"Content-Length: {len(ITEM)}\r\n"
        "x-amzn-RequestId: BENCHMARKREQUESTID0000000000000000000000000000000\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("ascii") + b"\r\n" + ITEM


KEEP_ALIVE_RESPONSE = _response(close=False)
CLOSE_RESPONSE = _response(close=True)


def _content_length(head: bytes) -> int:
    """The Content-Length of a lower-cased request head; 0 when there is none."""
    start = head.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    start += len(b"\r\ncontent-length:")
    end = head.find(b"\r\n", start)
    return int(head[start : end if end >= 0 else len(head)])


class FastServer:
    """Listens on 127.0.0.1 (port 0: any free port) and serves each connection in a thread."""

    def __init__(
        self,
        tls: ssl.SSLContext | None = None,
        handshake_delay: float = 0.0,
        first_byte_delay: float = 0.0,
        port: int = 0,
    ) -> None:
        self.tls = tls
        self.handshake_delay = handshake_delay
        self.first_byte_delay = first_byte_delay
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(1024)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0

    def start(self) -> FastServer:
        threading.Thread(target=self._accept_loop, name="accept", daemon=True).start()
        return self

    def stop(self) -> None:
        self._listener.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.tls is not None:
                if self.handshake_delay:
                    # From the ClientHello's arrival on, so that the whole delay adds to
                    # the client's wait (its own work before sending does not overlap it).
                    sock.recv(1, socket.MSG_PEEK)
                    time.sleep(self.handshake_delay)
                sock = self.tls.wrap_socket(sock, server_side=True)
            self._answer_requests(sock)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def _answer_requests(self, sock: socket.socket) -> None:
        buffer = b""
        while True:
            end = buffer.find(b"\r\n\r\n")
            while end < 0:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                end = buffer.find(b"\r\n\r\n")
            head = buffer[:end].lower()
            total = end + 4 + _content_length(head)
            while len(buffer) < total:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            buffer = buffer[total:]
            close = b"\r\nconnection: close" in head
            if self.first_byte_delay:
                time.sleep(self.first_byte_delay)
            sock.sendall(CLOSE_RESPONSE if close else KEEP_ALIVE_RESPONSE)
            if close:
                return


# About the size of botocore's signed GetItem request.
_REQUEST_BODY = b'{"TableName": "benchmark", "Key": {"id": {"S": "1"}}}'
SAMPLE_REQUEST = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n"
    b"X-Amz-Target: DynamoDB_20120810.GetItem\r\n"
    b"Content-Type: application/x-amz-json-1.0\r\n"
    b"User-Agent: " + b"x" * 200 + b"\r\nX-Amz-Date: 20250101T000000Z\r\n"
    b"Authorization: AWS4-HMAC-SHA256 " + b"x" * 200 + b"\r\n"
    b"Content-Length: " + str(len(_REQUEST_BODY)).encode() + b"\r\n\r\n" + _REQUEST_BODY
)


def round_trip_seconds(port: int, count: int) -> float:
    """Seconds per request and response on one keep-alive connection to the server at
    ``port``, from a raw-socket client that does nothing else: the server's speed alone."""
    expected = len(KEEP_ALIVE_RESPONSE)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()
        for _ in range(count):
            sock.sendall(SAMPLE_REQUEST)
            received = 0
            while received < expected:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the benchmark server closed the connection")
                received += len(chunk)
        return (time.perf_counter() - started) / count


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` so far, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name, in parentheses, may contain spaces: count fields after it.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class ServerProcess(ChildProcess):
    """``python -m benchmarks.server`` as a child process; it ends when this object closes."""

    def __init__(self, *options: str) -> None:
        super().__init__("benchmarks.server", *options)
        self.http_port: int = self.hello["http"]
        self.https_port: int | None = self.hello.get("https")

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tls-cert", help="certificate chain (PEM): also serve HTTPS")
    parser.add_argument("--tls-key", help="its private key (PEM)")
    parser.add_argument("--handshake-delay-ms", type=float, default=0.0)
    parser.add_argument("--first-byte-delay-ms", type=float, default=0.0)
    parser.add_argument("--syn-delay-ms", type=float, default=0.0, help="needs CAP_NET_ADMIN")
    args = parser.parse_args(argv)
    first_byte = args.first_byte_delay_ms / 1000.0
    servers = [FastServer(first_byte_delay=first_byte).start()]
    if args.tls_cert:
        context = tls_context(args.tls_cert, args.tls_key)
        handshake = args.handshake_delay_ms / 1000.0
        servers.append(FastServer(context, handshake, first_byte).start())
    with contextlib.ExitStack() as stack:
        if args.syn_delay_ms:
            from .nfqueue import SynDelay

            for server in servers:
                stack.enter_context(SynDelay(server.port, args.syn_delay_ms / 1000.0))
        ports = {"http": servers[0].port}
        if len(servers) > 1:
            ports["https"] = servers[1].port
        print(json.dumps(ports), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
