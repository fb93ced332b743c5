"""Layer: the TLS handshake, in ``urllib3.util.ssl_._ssl_wrap_socket_impl``.

That function only wraps the socket (the handshake runs in ``SSLContext.wrap_socket``);
loading CA certificates happens before it, so the span times the handshake alone.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import _runtime
from .. import attributes as A
from .._patching import Patcher


class _Handshake:
    __slots__ = ("span",)

    def __init__(self, server_name: str | None) -> None:
        self.span = _runtime.tracer.start_span(
            f"{A.SPAN_TLS} {server_name or ''}".rstrip(),
            kind=SpanKind.INTERNAL,
            attributes={A.TLS_PROTOCOL_NAME: "tls", A.TLS_SERVER_NAME: server_name or ""},
        )

    def finish(self, tls_sock: Any, error: BaseException | None) -> None:
        span = self.span
        if span.is_recording():
            if error is not None:
                span.set_attribute(A.ERROR_TYPE, type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR, str(error)))
            else:
                version = tls_sock.version() or ""
                cipher = tls_sock.cipher()
                span.set_attributes(
                    {
                        A.TLS_PROTOCOL_VERSION: version.replace("TLSv", ""),
                        A.TLS_CIPHER: cipher[0] if cipher else "",
                        A.TLS_RESUMED: bool(getattr(tls_sock, "session_reused", False)),
                    }
                )
        span.end()


def _start_handshake(instance: Any, args: tuple, kwargs: dict) -> _Handshake:
    server_name = args[3] if len(args) > 3 else kwargs.get("server_hostname")
    return _Handshake(server_name)


def apply(patcher: Patcher, urllib3: ModuleType) -> None:
    patcher.wrap(
        urllib3.util.ssl_,
        "_ssl_wrap_socket_impl",
        _runtime.hook("tls.handshake", _start_handshake),
    )
