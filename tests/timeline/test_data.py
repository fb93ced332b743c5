"""What the page is made of: a run of several processes, and the bound on its size."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conntrace import timeline

from ..cli.running import clean_environ, conntrace_run
from . import synthetic
from .test_html import page_data


@pytest.mark.parametrize("how", ["subprocess", "fork"])
def test_each_process_of_a_run_adds_its_lanes_to_one_page(how: str, server: Any, tmp_path: Path):
    parent_server, child_server = server(), server()
    page = tmp_path / "run.html"

    done = conntrace_run(
        [
            *("--exporter", "none", "--html", str(page)),
            *("python", "parent.py", parent_server.url, how, child_server.url),
        ]
    )

    assert done.returncode == 0, done.stderr
    data = page_data(page)
    by_pid = {process["pid"]: process for process in data["processes"]}
    assert len(by_pid) == 2
    assert data["report"]["totals"]["requests"] == 3
    seen = {}
    for process in by_pid.values():
        [group] = process["groups"]
        requests = len(timeline._values(process["bars"]["lane"]))
        seen[group[0]] = (len(process["lanes"]), requests)
    # Each server's connections and requests, drawn from the process that made them.
    assert seen == {
        f"127.0.0.1:{parent_server.port}": (len(parent_server.connections), 1),
        f"127.0.0.1:{child_server.port}": (len(child_server.connections), 2),
    }
    assert len(parent_server.connections) == len(child_server.connections) == 1


def test_the_least_needed_columns_are_left_out_past_the_size_bound(monkeypatch):
    diagnosis, kept = synthetic.run(requests=2_000, connections=4, base_ns=time.time_ns())
    data = timeline.document([timeline.process_section(kept, diagnosis)])
    whole = timeline.render(data)
    assert "Left out" not in whole
    without_urls, _ = timeline._payload(
        {
            **data,
            "trimmed": ["url"],
            "processes": [
                {**p, "urls": [], "bars": {**p["bars"], "url": []}} for p in data["processes"]
            ],
        }
    )
    # A bound the data only meets without its URLs.
    monkeypatch.setattr(timeline, "MAX_DATA_BYTES", len(without_urls))

    text, trimmed = timeline._payload(data)

    assert trimmed == ["url"]
    assert len(text) <= len(without_urls)
    page = timeline.render(data)
    assert "Left out to keep this file under 10 MB: request URLs." in page
    assert "object-1?" not in page


def test_a_finding_about_an_operation_links_the_lanes_that_carried_it():
    data = {
        "groups": [["a.example:443", 1, "https", 10], ["b.example:443", 1, "https", 10]],
        "lanes": [[0, 1], [1, 2], [1, 3]],
        "failed": [[1]],
        "bars": {"lane": {"runs": [0, 2, 1, 1, -2, 1]}},
        "lanes_by_label": {"S3.GetObject": [1, 2]},
    }
    assert timeline.lanes_about("b.example:443", data) == [1, 2, -2]
    assert timeline.lanes_about("S3.GetObject", data) == [1, 2]
    assert timeline.lanes_about("c.example:443", data) == []


IN_CODE = """
import sys
import conntrace
from conntrace import findings, timeline

conntrace.instrument()
timeline.install(sys.argv[2], findings.install())
import urllib3

http = urllib3.PoolManager()
for _ in range(3):
    http.request("GET", sys.argv[1])
"""


def test_in_code_the_page_is_written_at_exit(server: Any, tmp_path: Path):
    local = server()
    page = tmp_path / "in-code.html"

    done = subprocess.run(
        [sys.executable, "-c", IN_CODE, local.url, str(page)],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    data = page_data(page)
    [process] = data["processes"]
    assert len(process["lanes"]) == len(local.connections) == 1
    assert len(timeline._values(process["bars"]["lane"])) == len(local.requests) == 3
