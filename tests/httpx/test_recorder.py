"""The pytest recorder on httpx requests: the same assertions as for botocore's."""

from __future__ import annotations

import textwrap

import httpx  # noqa: F401  (loaded once here: pytester unloads what an inner run imports)
import pytest

pytest_plugins = ["pytester"]

INNER_OPTIONS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def test_the_recorder_sees_httpx_requests(pytester: pytest.Pytester, server):
    local = server()
    pytester.makepyfile(
        test_inner=textwrap.dedent(
            f"""
            import asyncio
            import httpx

            URL = {local.url!r}

            def test_one_client_one_connection(conntrace_recorder):
                with httpx.Client() as client:
                    for _ in range(3):
                        client.get(URL)
                conntrace_recorder.assert_connections(URL, opened=1, reasons={{"first": 1}})
                conntrace_recorder.assert_reused(URL, count=2)
                conntrace_recorder.assert_no_findings()

            def test_a_client_per_request_fails_its_check(conntrace_recorder):
                async def main():
                    for _ in range(3):
                        async with httpx.AsyncClient() as client:
                            await client.get(URL)

                asyncio.run(main())
                conntrace_recorder.assert_no_findings()
            """
        )
    )
    result = pytester.runpytest(*INNER_OPTIONS)

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*client_recreated*", "*httpx.Client*"])
    assert len(local.connections) == 4
