"""A small real HTTP proxy for the tests: forwarding (absolute URLs) and CONNECT tunnels.

It listens on 127.0.0.1 only and forwards only to 127.0.0.1, counting what conntrace claims
to see from the client side: client connections accepted, CONNECT requests (and their
answers), and requests forwarded. With ``credentials`` it asks for Basic authentication and
answers 407 when ``Proxy-Authorization`` is missing or wrong; it records every header it
received, so tests can check what the client sent. With ``tls`` it is an HTTPS proxy
(clients speak TLS to it, and TLS to the server inside the tunnel); ``upstream_tls`` is how
it speaks to servers of ``https://`` URLs it forwards (``use_forwarding_for_https``).
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
from urllib.parse import urlsplit

from .servers import _close, read_head


class LocalProxy:
    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        upstream_tls: ssl.SSLContext | None = None,
        host_name: str = "127.0.0.1",
    ) -> None:
        self.credentials = credentials
        self.tls = tls
        self.upstream_tls = upstream_tls
        self.host_name = host_name
        self.accepted = 0
        self.connects: list[tuple[str, int]] = []
        self.connect_statuses: list[int] = []
        self.forwarded: list[str] = []
        self.authorizations: list[str] = []
        self.open_tunnels = 0
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._stopped = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"{'https' if self.tls else 'http'}://{auth}{self.host_name}:{self.port}"

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _close(sock)

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._open.add(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.credentials is None:
            return True
        given = headers.get("proxy-authorization", "")
        self.authorizations.append(given)
        token = base64.b64encode(":".join(self.credentials).encode()).decode()
        return given == f"Basic {token}"

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        upstream_address: tuple[str, int] | None = None
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
            reader = client.makefile("rb")
            while True:
                head = read_head(reader)
                if head is None:
                    return
                method, target, headers = head
                if not self._authorized(headers):
                    if method == "CONNECT":
                        with self._lock:
                            self.connect_statuses.append(407)
                    client.sendall(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="tests"\r\n'
                        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    return
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    with self._lock:
                        self.connects.append((host, int(port)))
                    self._tunnel(client, reader, int(port))
                    return
                parts = urlsplit(target)
                address = ("127.0.0.1", parts.port or 80)
                if upstream is None or upstream_address != address:
                    if upstream is not None:
                        _close(upstream)
                    upstream = socket.create_connection(address)
                    if parts.scheme == "https" and self.upstream_tls is not None:
                        upstream = self.upstream_tls.wrap_socket(
                            upstream, server_hostname=parts.hostname
                        )
                    upstream_address = address
                with self._lock:
                    self.forwarded.append(target)
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                lines = [f"{method} {path or '/'} HTTP/1.1"]
                lines += [
                    f"{name}: {value}"
                    for name, value in headers.items()
                    if name not in ("proxy-authorization", "proxy-connection")
                ]
                length = int(headers.get("content-length", "0") or 0)
                body = reader.read(length) if length else b""
                upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
                response, close = _relay_response(upstream.makefile("rb"), method)
                client.sendall(response)
                if close:
                    return
        except (OSError, ValueError):
            return
        finally:
            if upstream is not None:
                _close(upstream)
            with self._lock:
                self._open.discard(client)
            _close(client)

    def _tunnel(self, client: socket.socket, reader, port: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", port))
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            with self._lock:
                self.connect_statuses.append(502)
            return
        with self._lock:
            self.connect_statuses.append(200)
            self.open_tunnels += 1
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        # The client waits for this answer before it sends anything through the tunnel, so
        # nothing is left in the reader's buffer.

        def pump(source: socket.socket, sink: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while True:
                    data = source.recv(65536)
                    if not data:
                        break
                    sink.sendall(data)
            # Either end closing ends the tunnel, as proxies do: the other pump's read
            # returns at once.
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        _close(upstream)
        with self._lock:
            self.open_tunnels -= 1


def _relay_response(reader, method: str) -> tuple[bytes, bool]:
    """One response read whole from the server (Content-Length framing, as the tests' servers
    answer), and whether its connection closes after it."""
    status = reader.readline()
    lines = [status]
    length = 0
    close = False
    while True:
        line = reader.readline()
        lines.append(line)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "connection" and value.strip().lower() == "close":
            close = True
    body = reader.read(length) if length and method != "HEAD" else b""
    return b"".join(lines) + body, close
