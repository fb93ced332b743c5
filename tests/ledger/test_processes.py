"""One ``conntrace-run --report`` over a parent, its fork pool's workers and a child Python
process: one report, an entry per process that made requests, and totals that add up to
what the server counted, sender by sender."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..servers import LocalServer
from .running import traced
from .truth import InFlight

SUMMED = ("api_calls", "requests", "reused", "connections_opened", "dns_lookups", "retries")


def test_one_report_adds_up_every_process_of_the_run(
    server: Callable[..., LocalServer], tmp_path: Path
):
    answers = InFlight()
    local = server(respond=answers)

    run = traced("fork_pool.py", [local.url], tmp_path / "report.json")

    # The parent (2 GETs), 6 pool tasks (3 each) and the child (4): 24 requests, each
    # counted under its sender's pid; at least one worker took a task.
    senders = dict(answers.by_pid)
    served = len(local.requests)
    assert sum(senders.values()) == served == 24
    assert len(senders) >= 3, senders
    report = run.report
    assert report["totals"]["requests"] == served, (
        f"report totals.requests {report['totals']['requests']}, server {served} "
        f"from {len(senders)} processes"
    )
    processes: list[dict[str, Any]] = report.get("processes")  # type: ignore[assignment]
    assert isinstance(processes, list), f"no processes list in the report: {sorted(report)}"
    pids = [entry["pid"] for entry in processes]
    assert len(pids) == len(set(pids)), pids
    for entry in processes:
        assert {"pid", "totals", "hosts", "findings"} <= set(entry), sorted(entry)
    made = {e["pid"]: e["totals"]["requests"] for e in processes if e["totals"]["requests"]}
    assert made == senders
    for key in SUMMED:
        assert report["totals"][key] == sum(e["totals"][key] for e in processes), key
    for reason, count in report["totals"]["connections_by_reason"].items():
        assert count == sum(e["totals"]["connections_by_reason"][reason] for e in processes)
    assert report["totals"]["connections_opened"] == len(local.connections)
