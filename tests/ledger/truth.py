"""The servers' side of the ledger's acceptance tests: what really reached the wire.

``InFlight`` answers :class:`tests.servers.LocalServer`'s requests slowly and counts them;
``CountingWSGI`` does the same as middleware around a WSGI application (moto), and
``serve_wsgi`` serves one with waitress on 127.0.0.1, counting the TCP connections it
accepts. A peak of requests being answered at once is a lower bound of the connections the
client had in use at once: every such request holds one.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Callable

from ..servers import Request, Response

_PID = re.compile(r"/pid/(\d+)")


class Gauge:
    """Requests being answered now, their peak, and every request counted by sender pid."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.total = 0
        self.by_pid: Counter[int] = Counter()

    def enter(self, target: str) -> None:
        match = _PID.search(target)
        with self.lock:
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)
            if match:
                self.by_pid[int(match.group(1))] += 1

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


class InFlight(Gauge):
    """A ``respond`` for ``LocalServer``: waits ``delay`` seconds inside the count, then 200."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay

    def __call__(self, request: Request) -> Response:
        self.enter(request.target)
        try:
            time.sleep(self.delay)
        finally:
            self.leave()
        return Response(body=b'{"ok": true}')


class CountingWSGI(Gauge):
    """WSGI middleware: counts each request from its start until its body is closed."""

    def __init__(self, app: Callable[..., Iterable[bytes]], delay: float = 0.0) -> None:
        super().__init__()
        self.app = app
        self.delay = delay

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        self.enter(environ.get("PATH_INFO", ""))
        try:
            time.sleep(self.delay)
            body = self.app(environ, start_response)
        except BaseException:
            self.leave()
            raise
        return _Closing(body, self.leave)


class _Closing:
    """A response body that calls ``done`` once, when the server closes it."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self.body = body
        self.done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            done, self.done = self.done, None
            if done is not None:
                done()


class WSGIServer:
    """A waitress server on 127.0.0.1 that counts the TCP connections it accepted."""

    def __init__(self, app: CountingWSGI, threads: int) -> None:
        import waitress
        from waitress.channel import HTTPChannel

        self.app = app
        self.accepted = 0
        lock = threading.Lock()
        server = self

        class Counted(HTTPChannel):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                with lock:
                    server.accepted += 1
                super().__init__(*args, **kwargs)

        self._wsgi = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
        self._wsgi.channel_class = Counted
        self.port: int = int(self._wsgi.effective_port)
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._wsgi.run, daemon=True).start()

    @property
    def requests(self) -> int:
        return self.app.total

    def close(self) -> None:
        # Keep-alive connections keep waitress's loop running; its thread is a daemon.
        self._wsgi.close()


def moto_app() -> Any:
    """moto's server application: S3 and DynamoDB, told apart by each request's signature."""
    from moto.server import DomainDispatcherApplication, create_backend_app

    return DomainDispatcherApplication(create_backend_app)
