"""The private functions conntrace hooks keep the signatures its hooks rely on.

conntrace wraps these with wrapt and reads some arguments by position (``args[0]``...). A
urllib3 or botocore release that renames, reorders or drops one must fail here, loudly,
rather than leave the hooks reading the wrong argument. Pinned for urllib3 1.26 and 2.x,
and botocore from 1.23 on; conntrace may be instrumented in this session, so the originals
are read through ``inspect.unwrap``.
"""

from __future__ import annotations

import http.client
import inspect
from typing import Any, Callable

import botocore.client
import pytest
import urllib3
import urllib3.connection
import urllib3.connectionpool
import urllib3.util.connection
import urllib3.util.ssl_

URLLIB3_MAJOR = int(urllib3.__version__.split(".")[0])
Pool = urllib3.connectionpool.HTTPConnectionPool

_URLOPEN_HEAD = [
    "self",
    "method",
    "url",
    "body",
    "headers",
    "retries",
    "redirect",
    "assert_same_host",
    "timeout",
    "pool_timeout",
    "release_conn",
    "chunked",
    "body_pos",
]

# name: (where it is, its parameters on urllib3 1.26, on urllib3 2.x)
SIGNATURES: dict[str, tuple[Callable[[], Any], list[str], list[str]]] = {
    "HTTPConnectionPool.urlopen": (
        lambda: Pool.urlopen,
        [*_URLOPEN_HEAD, "response_kw"],
        [*_URLOPEN_HEAD, "preload_content", "decode_content", "response_kw"],
    ),
    "HTTPConnectionPool._get_conn": (
        lambda: Pool._get_conn,
        ["self", "timeout"],
        ["self", "timeout"],
    ),
    "HTTPConnectionPool._put_conn": (
        lambda: Pool._put_conn,
        ["self", "conn"],
        ["self", "conn"],
    ),
    "HTTPConnectionPool._make_request": (
        lambda: Pool._make_request,
        ["self", "conn", "method", "url", "timeout", "chunked", "httplib_request_kw"],
        [
            "self",
            "conn",
            "method",
            "url",
            "body",
            "headers",
            "retries",
            "timeout",
            "chunked",
            "response_conn",
            "preload_content",
            "decode_content",
            "enforce_content_length",
        ],
    ),
    "HTTPConnectionPool.__init__": (
        lambda: Pool.__init__,
        [
            "self",
            "host",
            "port",
            "strict",
            "timeout",
            "maxsize",
            "block",
            "headers",
            "retries",
            "_proxy",
            "_proxy_headers",
            "_proxy_config",
            "conn_kw",
        ],
        [
            "self",
            "host",
            "port",
            "timeout",
            "maxsize",
            "block",
            "headers",
            "retries",
            "_proxy",
            "_proxy_headers",
            "_proxy_config",
            "conn_kw",
        ],
    ),
    "HTTPConnection.connect": (
        lambda: urllib3.connection.HTTPConnection.connect,
        ["self"],
        ["self"],
    ),
    "HTTPSConnection.connect": (
        lambda: urllib3.connection.HTTPSConnection.connect,
        ["self"],
        ["self"],
    ),
    "util.connection.create_connection": (
        lambda: urllib3.util.connection.create_connection,
        ["address", "timeout", "source_address", "socket_options"],
        ["address", "timeout", "source_address", "socket_options"],
    ),
    "util.ssl_._ssl_wrap_socket_impl": (
        lambda: urllib3.util.ssl_._ssl_wrap_socket_impl,
        ["sock", "ssl_context", "tls_in_tls", "server_hostname"],
        ["sock", "ssl_context", "tls_in_tls", "server_hostname"],
    ),
    "http.client.HTTPConnection.close": (
        lambda: http.client.HTTPConnection.close,
        ["self"],
        ["self"],
    ),
    "botocore BaseClient._make_api_call": (
        lambda: botocore.client.BaseClient._make_api_call,
        ["self", "operation_name", "api_params"],
        ["self", "operation_name", "api_params"],
    ),
}


def parameters(function: Any) -> dict[str, inspect.Parameter]:
    original = inspect.unwrap(function)
    return dict(inspect.signature(original, follow_wrapped=False).parameters)


@pytest.mark.parametrize("name", list(SIGNATURES))
def test_parameter_names_and_order(name: str):
    where, on_1_26, on_2 = SIGNATURES[name]
    expected = on_2 if URLLIB3_MAJOR >= 2 else on_1_26

    assert list(parameters(where())) == expected, (
        f"{name} changed on urllib3 {urllib3.__version__}: check what conntrace's hook reads"
    )


# What conntrace's hooks read by position from ``args`` (``self`` not counted, as wrapt
# passes it apart): (function, index in args, name of the parameter there).
READ_BY_POSITION = [
    ("HTTPConnectionPool.urlopen", 0, "method"),
    ("HTTPConnectionPool.urlopen", 1, "url"),
    ("HTTPConnectionPool._make_request", 0, "conn"),
    ("HTTPConnectionPool._make_request", 1, "method"),
    ("HTTPConnectionPool._make_request", 2, "url"),
    ("HTTPConnectionPool._put_conn", 0, "conn"),
    ("util.connection.create_connection", 0, "address"),
    ("util.ssl_._ssl_wrap_socket_impl", 0, "sock"),
    ("util.ssl_._ssl_wrap_socket_impl", 1, "ssl_context"),
    ("util.ssl_._ssl_wrap_socket_impl", 3, "server_hostname"),
    ("botocore BaseClient._make_api_call", 0, "operation_name"),
]


@pytest.mark.parametrize(("name", "index", "parameter"), READ_BY_POSITION)
def test_the_arguments_conntrace_reads_are_where_it_reads_them(
    name: str, index: int, parameter: str
):
    found = list(parameters(SIGNATURES[name][0]()).values())
    if found and found[0].name == "self":
        found = found[1:]

    assert index < len(found), f"{name} has no argument at position {index}"
    assert found[index].name == parameter, f"{name}: args[{index}] is {found[index].name}"
    assert found[index].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    # Everything before it can be passed by position too: args[index] is this one.
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in found[:index])


def test_the_server_name_is_optional_and_none_by_default():
    found = parameters(urllib3.util.ssl_._ssl_wrap_socket_impl)

    assert found["server_hostname"].default is None
    assert all(found[n].default is inspect.Parameter.empty for n in ("sock", "ssl_context"))


def test_the_stale_connection_check_is_imported_into_connectionpool():
    # _get_conn calls it by this name from urllib3.connectionpool's namespace.
    check = urllib3.connectionpool.is_connection_dropped

    assert callable(check)
    assert list(parameters(check)) == ["conn"]
    assert "is_connection_dropped" in inspect.getsource(inspect.unwrap(Pool._get_conn))


def test_the_originals_are_read_even_while_conntrace_is_on(spans):
    # With conntrace on, its wrapt wrappers stand in front: unwrapped, the pins still hold.
    current = {name: where() for name, (where, _, _) in SIGNATURES.items()}
    wrapped = [
        name for name, function in current.items() if inspect.unwrap(function) is not function
    ]

    assert wrapped, "conntrace wrapped none of the functions it hooks"
    for name, function in current.items():
        _, on_1_26, on_2 = SIGNATURES[name]
        assert list(parameters(function)) == (on_2 if URLLIB3_MAJOR >= 2 else on_1_26), name
