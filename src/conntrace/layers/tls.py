"""Layer: the TLS handshake, in ``urllib3.util.ssl_._ssl_wrap_socket_impl``.

That function only wraps the socket (the handshake runs in ``SSLContext.wrap_socket``);
loading CA certificates happens before it, so the step times the handshake alone.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .. import _runtime
from .. import attributes as A
from .._context import current_setup
from ..ledger import TLS, Step

if TYPE_CHECKING:
    from .._patching import Patcher


class _Handshake:
    __slots__ = ("step",)

    def __init__(self, step: Step) -> None:
        self.step = step

    def finish(self, tls_sock: Any, error: BaseException | None) -> None:
        step = self.step
        step.end_ns = time.time_ns()
        step.error = error
        if error is None:
            version = tls_sock.version() or ""
            cipher = tls_sock.cipher()
            step.details[A.TLS_PROTOCOL_VERSION] = version.replace("TLSv", "")
            step.details[A.TLS_CIPHER] = cipher[0] if cipher else ""
            step.details[A.TLS_RESUMED] = bool(getattr(tls_sock, "session_reused", False))


def _start_handshake(instance: Any, args: tuple, kwargs: dict) -> _Handshake | None:
    setup = current_setup.get()
    if setup is None:
        return None
    server_name = args[3] if len(args) > 3 else kwargs.get("server_hostname")
    step = Step(TLS, time.time_ns())
    step.details[A.TLS_PROTOCOL_NAME] = "tls"
    step.details[A.TLS_SERVER_NAME] = server_name or ""
    setup.add(step)
    return _Handshake(step)


def apply(patcher: Patcher, urllib3: ModuleType) -> None:
    patcher.wrap(
        urllib3.util.ssl_,
        "_ssl_wrap_socket_impl",
        _runtime.hook("tls.handshake", _start_handshake),
    )
