"""``conntrace-run`` traces a program that uses httpx, with no change to it or to conntrace."""

from __future__ import annotations

import json
import textwrap

from ..cli.running import conntrace_run

_PROGRAM = textwrap.dedent(
    """
    import asyncio, sys
    import httpx

    url = sys.argv[1]
    with httpx.Client() as client:
        for _ in range(3):
            client.get(url).raise_for_status()

    async def main():
        async with httpx.AsyncClient() as client:
            for _ in range(2):
                (await client.get(url)).raise_for_status()

    asyncio.run(main())
    print("done")
    """
)


def test_conntrace_run_traces_httpx_sync_and_async(server, tmp_path):
    local = server()
    program = tmp_path / "uses_httpx.py"
    program.write_text(_PROGRAM)
    report = tmp_path / "report.json"

    run = conntrace_run(
        ["--exporter", "console", "--report", str(report), "python", str(program), local.url]
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "done\n"

    totals = json.loads(report.read_text())["totals"]
    assert totals["requests"] == len(local.requests) == 5
    assert totals["connections_opened"] == len(local.connections) == 2
    assert totals["reused"] == 3
    # The second client is a second pool for the same server.
    assert totals["connections_by_reason"]["first"] == 1
    assert totals["connections_by_reason"]["new_pool"] == 1
    lines = [line for line in run.waterfall_lines() if line.startswith("GET ")]
    server = f"GET 127.0.0.1:{local.port} 200"
    assert lines[0].startswith(f"{server} · new #1 (first)")
    assert any(line.startswith(f"{server} · reused #1 · 2nd request") for line in lines)
    assert any(line.startswith(f"{server} · new #2 (new_pool)") for line in lines)
    assert any(line.startswith(f"{server} · reused #2 · 2nd request") for line in lines)
