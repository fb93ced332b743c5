"""Query strings in ``url.full``: every value is redacted unless its key is listed.

A real program under ``conntrace-run`` sends tokens and passwords in query strings to a
local server, directly and through a local forward proxy; the spans arrive at a real OTLP
receiver, and what they say is checked there.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conntrace import attributes as A
from conntrace._redact import full_url

from ..otlp_receiver import OtlpReceiver
from .running import conntrace_run

SECRETS = ("tok-marker-1", "acc-marker-2", "pw-marker-3", "key-marker-4", "dest-pw-marker-5")
QUERY = "token=tok-marker-1&access_token=acc-marker-2&password=pw-marker-3&api_key=key-marker-4"

PROGRAM = textwrap.dedent(
    f"""
    import sys, urllib3
    url = sys.argv[1]
    urllib3.PoolManager().request("GET", url + "/items?{QUERY}&page=2&limit=5")
    # Through a forward proxy (the same local server): the pool sees the absolute URL,
    # credentials and all. The proxy answers itself; port 9 is never contacted.
    proxy = urllib3.ProxyManager(url)
    proxy.request("GET", "http://someone:dest-pw-marker-5@127.0.0.1:9/p?page=7&token=x")
    print("done")
    """
)


def run_program(tmp_path: Path, server, args: list[str], env: dict[str, str]):
    local = server()
    program = tmp_path / "query_app.py"
    program.write_text(PROGRAM)
    with OtlpReceiver(protocol="http") as receiver:
        done = conntrace_run(
            [*args, "python", str(program), local.url], env={**receiver.environ(), **env}
        )
        spans = receiver.wait_for_spans(
            lambda got: len([s for s in got if s.name == "GET"]) >= 2, timeout=10
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    # The server did get the real values: only what conntrace emits is redacted.
    assert any("tok-marker-1" in request.target for request in local.requests)
    urls = sorted(str(s.attributes[A.URL_FULL]) for s in spans if s.name == "GET")
    assert all(secret not in repr(spans) for secret in SECRETS)
    return local, urls, done


def test_every_query_value_is_redacted_by_default(tmp_path, server):
    local, urls, _ = run_program(tmp_path, server, [], {})

    assert urls == [
        f"http://127.0.0.1:{local.port}/items?token=REDACTED&access_token=REDACTED"
        "&password=REDACTED&api_key=REDACTED&page=REDACTED&limit=REDACTED",
        "http://REDACTED:REDACTED@127.0.0.1:9/p?page=REDACTED&token=REDACTED",
    ]


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_listed_keys_keep_their_values(tmp_path, server, how):
    args = ["--keep-query-values", "page,LIMIT"] if how == "flag" else []
    env = {"CONNTRACE_KEEP_QUERY_VALUES": "page,LIMIT"} if how == "variable" else {}

    local, urls, _ = run_program(tmp_path, server, args, env)

    assert urls == [
        f"http://127.0.0.1:{local.port}/items?token=REDACTED&access_token=REDACTED"
        "&password=REDACTED&api_key=REDACTED&page=2&limit=5",
        "http://REDACTED:REDACTED@127.0.0.1:9/p?page=7&token=REDACTED",
    ]


def test_unreadable_setting_warns_once_and_redacts_everything(tmp_path, server):
    _, urls, done = run_program(
        tmp_path, server, [], {"CONNTRACE_KEEP_QUERY_VALUES": "page=2,limit"}
    )

    [warning] = done.stderr.splitlines()
    assert warning.startswith("conntrace: ignoring CONNTRACE_KEEP_QUERY_VALUES='page=2,limit'")
    assert all("=REDACTED" in url and "page=2" not in url for url in urls)


def test_bad_flag_value_is_a_usage_error():
    done = conntrace_run(["--keep-query-values", "a b", "true"])

    assert done.returncode == 2
    assert "--keep-query-values 'a b': expected query keys" in done.stderr


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("::1", 8443, "https://[::1]:8443/x?a=REDACTED"),
        ("fe80::1%eth0", None, "https://[fe80::1%eth0]/x?a=REDACTED"),
        ("[::1]", 80, "https://[::1]:80/x?a=REDACTED"),
        ("127.0.0.1", 80, "https://127.0.0.1:80/x?a=REDACTED"),
    ],
)
def test_ipv6_hosts_are_bracketed(host, port, url):
    assert full_url("https", host, port, "/x?a=1") == url
