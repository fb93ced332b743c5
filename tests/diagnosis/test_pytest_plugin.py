"""The pytest plugin, run by pytest's own ``pytester``: passing tests and failure messages."""

from __future__ import annotations

import textwrap
from importlib.metadata import entry_points

# Imported here so that pytester's in-process runs find them already loaded: it unloads
# whatever a run imports, and a second copy of conntrace.findings would be a second registry.
import boto3  # noqa: F401
import botocore.stub  # noqa: F401
import pytest
from opentelemetry.sdk.trace import TracerProvider

import conntrace
from conntrace import attributes as A
from conntrace import findings

pytest_plugins = ["pytester"]

HEADER = """
import boto3

URL = {url!r}


def client():
    return boto3.client("dynamodb", endpoint_url=URL, region_name="us-east-1")
"""


# Other installed plugins stay out of the inner runs: hypothesis's alone would import
# itself again in each (pytester unloads what a run imported).
INNER_OPTIONS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, url: str, body: str, *options: str) -> pytest.RunResult:
    source = HEADER.format(url=url) + textwrap.dedent(body)
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest(*INNER_OPTIONS, *options)


def test_the_plugin_is_a_pytest11_entry_point(pytester: pytest.Pytester):
    [entry] = [e for e in entry_points(group="pytest11") if e.name == "conntrace"]
    assert entry.value == "conntrace.pytest_plugin"
    result = pytester.runpytest("--fixtures", *INNER_OPTIONS)
    result.stdout.fnmatch_lines(["conntrace_recorder*", "*Records the API calls*"])


def test_a_reused_client_passes_on_a_local_server(pytester: pytest.Pytester, server):
    local = server()
    result = run(
        pytester,
        local.url,
        """
        def test_one_client_one_connection(conntrace_recorder):
            dynamodb = client()
            for _ in range(5):
                dynamodb.list_tables()
            conntrace_recorder.assert_connections(URL, opened=1, reasons={"first": 1})
            conntrace_recorder.assert_reused(URL, count=4)
            conntrace_recorder.assert_calls("DynamoDB.ListTables", count=5, attempts=5)
            conntrace_recorder.assert_no_findings()
            assert conntrace_recorder.opened() == {"first": 1}
            assert [c.reason for c in conntrace_recorder.connections] == ["first"]
        """,
    )
    result.assert_outcomes(passed=1)
    assert len(local.connections) == 1


def test_each_test_starts_without_pools(pytester: pytest.Pytester, server):
    result = run(
        pytester,
        server().url,
        """
        import pytest

        @pytest.mark.parametrize("run", [1, 2])
        def test_first_connection_every_time(conntrace_recorder, run):
            client().list_tables()
            conntrace_recorder.assert_connections(URL, opened=1, reasons={"first": 1})
        """,
    )
    result.assert_outcomes(passed=2)


def test_a_client_per_call_fails_with_the_connections_and_why(pytester: pytest.Pytester, server):
    local = server()
    result = run(
        pytester,
        local.url,
        """
        def test_client_per_call(conntrace_recorder):
            for _ in range(3):
                client().list_tables()
            conntrace_recorder.assert_connections(URL, opened=1, reasons={"first": 1})
        """,
    )
    result.assert_outcomes(failed=1)
    where = f"127.0.0.1:{local.port}"
    result.stdout.fnmatch_lines(
        [
            '>*conntrace_recorder.assert_connections(URL, opened=1, reasons={"first": 1})',
            f"E*AssertionError: conntrace: expected 1 connection opened to {where}, saw 3",
            f"E*conntrace: expected connections opened to {where} for first 1, "
            "saw first 1, new_pool 2",
            "E*connections opened:",
            f"E*#* first *{where}",
            f"E*#* new_pool *{where}",
            f"E*#* new_pool *{where}",
            "E*requests:",
            f"E*1. POST {where} -> 200, new (first), connection #*",
            "E*new_pool: a client (and its pool) was created again for a host that already had "
            "one: create the client once and reuse it",
        ]
    )
    # The failure points at the test's line, not into the plugin.
    assert "pytest_plugin.py" not in result.stdout.str()


def test_no_reuse_fails_with_the_reason(pytester: pytest.Pytester, server):
    local = server(close_after_response=True)
    result = run(
        pytester,
        local.url,
        """
        def test_keep_alive(conntrace_recorder):
            dynamodb = client()
            for _ in range(3):
                dynamodb.list_tables()
            conntrace_recorder.assert_reused(URL)
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"E*conntrace: expected at least 1 request to 127.0.0.1:{local.port} to reuse a "
            "connection, saw 0 of 3",
            f"E*3. POST 127.0.0.1:{local.port} -> 200, new (server_closed), connection #*",
            "E*server_closed: the server closed the previous connection after its response "
            "('Connection: close', or HTTP/1.0 without keep-alive)",
        ]
    )


def test_findings_fail_assert_no_findings(pytester: pytest.Pytester, server):
    local = server()
    result = run(
        pytester,
        local.url,
        """
        def test_healthy(conntrace_recorder):
            for _ in range(3):
                client().list_tables()
            conntrace_recorder.assert_no_findings()
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            # Connection setup's share of the time depends on this machine's speed: not counted.
            "E*conntrace: expected no findings, saw *:",
            f"E*[[]warning] client created again and again: 127.0.0.1:{local.port}  "
            "(client_recreated)",
            "E*advice: Create the boto3 client or resource once*",
        ]
    )


STUBBED = """
from botocore.stub import Stubber


def test_stubbed_get_item(conntrace_recorder):
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    with Stubber(dynamodb) as stubber:
        stubber.add_response(
            "get_item",
            {"Item": {"id": {"S": "1"}}},
            {"TableName": "users", "Key": {"id": {"S": "1"}}},
        )
        item = dynamodb.get_item(TableName="users", Key={"id": {"S": "1"}})["Item"]
        stubber.assert_no_pending_responses()
    assert item == {"id": {"S": "1"}}
    conntrace_recorder.assert_calls("GetItem", count=1, attempts=0)
    conntrace_recorder.assert_connections(opened=0)
    assert conntrace_recorder.requests == []
    conntrace_recorder.assert_calls("PutItem", count=1)
"""


def test_stubber_calls_are_recorded_without_connections(pytester: pytest.Pytester):
    pytester.makepyfile(test_inner="import boto3\n" + STUBBED)
    result = pytester.runpytest(*INNER_OPTIONS)

    result.assert_outcomes(failed=1)
    # Every assertion before the last passed; the last one names the calls made.
    result.stdout.fnmatch_lines(
        [
            '>*conntrace_recorder.assert_calls("PutItem", count=1)',
            "E*AssertionError: conntrace: expected 1 PutItem call, saw 0",
            "E*calls:",
            "E*DynamoDB.GetItem: 0 attempts",
        ]
    )


def test_moto_server_calls_reuse_one_connection(pytester: pytest.Pytester, moto_endpoint):
    result = run(
        pytester,
        moto_endpoint,
        """
        def test_table_round_trip(conntrace_recorder):
            dynamodb = client()
            dynamodb.create_table(
                TableName="plugin",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            dynamodb.put_item(TableName="plugin", Item={"id": {"S": "1"}})
            dynamodb.get_item(TableName="plugin", Key={"id": {"S": "1"}})
            conntrace_recorder.assert_calls(count=3, attempts=3)
            conntrace_recorder.assert_connections(URL, opened=1, reasons={"first": 1})
            conntrace_recorder.assert_reused(URL, count=2)
            conntrace_recorder.assert_no_findings()
        """,
    )
    result.assert_outcomes(passed=1)


def test_with_conntrace_already_on_the_recorder_listens(pytester: pytest.Pytester, server):
    provider = TracerProvider(shutdown_on_exit=False)
    conntrace.instrument(tracer_provider=provider)
    shared = findings.install(metrics=False, report=False)
    try:
        local = server()
        result = run(
            pytester,
            local.url,
            """
            import conntrace

            def test_inside_a_traced_run(conntrace_recorder):
                assert conntrace.is_instrumented()
                for _ in range(3):
                    client().list_tables()
                conntrace_recorder.assert_connections(
                    URL, opened=3, reasons={"first": 1, "new_pool": 2}
                )
                found = {f.id for f in conntrace_recorder.findings}
                assert "client_recreated" in found
                # An IP address is not looked up: no lookup to repeat.
                assert "repeated_dns_lookups" not in found
            """,
        )
        result.assert_outcomes(passed=1)
        # The run's own diagnosis saw the calls and stays the current one.
        assert findings.current() is shared
        assert [h["requests"] for h in shared.hosts()] == [3]
    finally:
        conntrace.uninstrument()
        shared.close()
        provider.shutdown()


def test_conntrace_on_without_a_diagnosis_still_records(pytester: pytest.Pytester, server):
    """The recorder reads the ledger: it needs no diagnosis of the run's, nor spans."""
    provider = TracerProvider(shutdown_on_exit=False)
    conntrace.instrument(tracer_provider=provider)
    try:
        result = run(
            pytester,
            server().url,
            """
            def test_recorded(conntrace_recorder):
                client().list_tables()
                client().list_tables()
                conntrace_recorder.assert_calls("ListTables", count=2, attempts=2)
                assert sum(conntrace_recorder.opened(URL).values()) == 2
            """,
        )
    finally:
        conntrace.uninstrument()
        provider.shutdown()
    result.assert_outcomes(passed=1)


def test_a_mistyped_reason_or_keyword_is_rejected_with_the_valid_ones(
    pytester: pytest.Pytester, server
):
    result = run(
        pytester,
        server().url,
        """
        import pytest

        def test_mistyped_reason(conntrace_recorder):
            client().list_tables()
            with pytest.raises(ValueError) as caught:
                conntrace_recorder.assert_connections(URL, reasons={"frist": 1})
            print("REASON:", caught.value)

        def test_mistyped_keyword(conntrace_recorder):
            with pytest.raises(TypeError) as caught:
                conntrace_recorder.assert_connections(URL, open=1)
            print("KEYWORD:", caught.value)
            with pytest.raises(TypeError) as caught:
                conntrace_recorder.assert_reused(URL, cuont=1)
            print("KEYWORD:", caught.value)
        """,
        "-s",
    )
    result.assert_outcomes(passed=2)
    valid = ", ".join(A.REASONS)
    assert valid.startswith("first, new_pool, ")
    result.stdout.fnmatch_lines(
        [
            f"*REASON: conntrace: unknown reason 'frist' in reasons=; valid reasons: {valid}",
            "*KEYWORD: conntrace: assert_connections() has no argument open; "
            "valid: server, opened, reasons",
            "KEYWORD: conntrace: assert_reused() has no argument cuont; "
            "valid: server, count, at_least",
        ]
    )


def test_under_a_traced_run_a_pool_from_before_the_test_leaves_first_first(
    pytester: pytest.Pytester, server
):
    """A session fixture's client made the server's first pool: the test's own client still
    opens its first connection as ``first``, as it does with conntrace off."""
    provider = TracerProvider(shutdown_on_exit=False)
    conntrace.instrument(tracer_provider=provider)
    shared = findings.install(metrics=False, report=False)
    try:
        local = server()
        body = """
            import pytest

            @pytest.fixture(scope="session")
            def warm():
                client().list_tables()

            def test_own_client(warm, conntrace_recorder):
                dynamodb = client()
                for _ in range(3):
                    dynamodb.list_tables()
                client().list_tables()
                conntrace_recorder.assert_connections(
                    URL, opened=2, reasons={"first": 1, "new_pool": 1}
                )
                assert [r.reason for r in conntrace_recorder.requests] == [
                    "first", None, None, "new_pool"
                ]
            """
        traced = run(pytester, local.url, body)
        # The run itself saw three pools for the server.
        [host] = shared.hosts()
        assert host["connections_opened"]["new_pool"] == 2
    finally:
        conntrace.uninstrument()
        shared.close()
        provider.shutdown()
    traced.assert_outcomes(passed=1)
    run(pytester, local.url, body).assert_outcomes(passed=1)
