"""Where the program made a client or session: the first frame of the calling stack outside
the libraries conntrace traces, found by walking ``sys._getframe`` (a few attribute reads per
frame, once per client or pool; no source lines are read).

The library is the one the program called there: the traced library frame nearest to that
first outside frame (``boto3`` counts as botocore). The AWS CLI has no program code of its
own above it: its frames are the origin, and the library is ``awscli``. (Recent AWS CLI
releases carry their own botocore under ``awscli/`` and import it as ``botocore``: its
frames count as botocore's by their module name.)
"""

from __future__ import annotations

import os
import sys
import sysconfig
from types import FrameType
from typing import Any, Callable

from .._context import current_call
from ..ledger import AIOBOTOCORE, AIOHTTP, AWSCLI, BOTOCORE, HTTPX, REQUESTS, URLLIB3, Origin

# Top-level packages that are not the program: the library each one stands for, or "" for
# those that only carry the call (conntrace itself, its patching, the standard library).
_LIBRARIES = {
    "boto3": BOTOCORE,
    "botocore": BOTOCORE,
    "s3transfer": BOTOCORE,
    "requests": REQUESTS,
    "urllib3": URLLIB3,
    "httpx": HTTPX,
    "httpcore": HTTPX,
    "aiohttp": AIOHTTP,
    "aiobotocore": AIOBOTOCORE,
    "aioboto3": AIOBOTOCORE,
    "conntrace": "",
    "wrapt": "",
    "anyio": "",
    "h11": "",
    "aiohappyeyeballs": "",
    "yarl": "",
    "multidict": "",
}
_STDLIB_NAMES: frozenset[str] = frozenset(getattr(sys, "stdlib_module_names", ()))
_STDLIB_PATHS = tuple(
    {os.path.normcase(sysconfig.get_paths()[key]) + os.sep for key in ("stdlib", "platstdlib")}
)
_THIRD_PARTY = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)


def _is_stdlib(package: str, filename: str) -> bool:
    if _STDLIB_NAMES:
        return package in _STDLIB_NAMES
    # Python 3.9: by where the file lies.
    if filename.startswith("<frozen"):
        return True
    path = os.path.normcase(filename)
    return path.startswith(_STDLIB_PATHS) and not any(part in path for part in _THIRD_PARTY)


def find(frame: FrameType | None, default_library: str = URLLIB3) -> Origin | None:
    """The origin of the call that ``frame`` is part of; None when every frame is a
    library's (a pool made by a thread that only runs library code)."""
    library = ""
    while frame is not None:
        name = frame.f_globals.get("__name__") or ""
        package = name.partition(".")[0]
        known = _LIBRARIES.get(package)
        if known is None and not _is_stdlib(package, frame.f_code.co_filename):
            code = frame.f_code
            if package == AWSCLI:
                library = AWSCLI
            return Origin(
                code.co_filename, frame.f_lineno, code.co_name, library or default_library
            )
        if known:
            library = known
        frame = frame.f_back
    return None


def noting_where_made(library: str) -> Callable[[Any, tuple, dict], None]:
    """A hook's start for the constructor of a client's pool (an httpcore pool, an aiohttp
    connector): it notes on the object where the program made it, for the ledger's pools
    made from it later (``made_at``). Inside an API call the maker is a library's client
    (aiobotocore's, at its first call): that call site is not where the client was made."""

    def start(instance: Any, args: tuple, kwargs: dict) -> None:
        call = current_call.get()
        if call is None or not call.is_api:
            instance.__dict__["_conntrace_made_at"] = find(sys._getframe(), library)

    return start


def made_at(instance: Any) -> Origin | None:
    origin: Origin | None = instance.__dict__.get("_conntrace_made_at")
    return origin
