"""What the page is made of: a run of several processes, and the bound on its size."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conntrace import _runfiles, timeline

from ..cli.running import clean_environ, conntrace_run
from . import synthetic
from .test_html import column, page_data


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
        [target] = [process["strings"][index] for index in column(process["groups"]["target"])]
        lanes = len(column(process["lanes"]["id"]))
        seen[target] = (lanes, len(column(process["bars"]["lane"])))
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


def test_a_finding_links_its_hosts_lanes_or_those_of_its_operation():
    groups = ["a.example:443", "b.example:443", "b.example:443"]
    lane_groups = [0, 1, 1, 2]
    by_label = {"S3.GetObject": [2, 1]}
    # b.example's two pools: their lanes, and the row of failed connects of its first pool.
    assert timeline.lanes_about("b.example:443", groups, lane_groups, {1}, by_label) == [
        1,
        2,
        3,
        -2,
    ]
    assert timeline.lanes_about("S3.GetObject", groups, lane_groups, {1}, by_label) == [1, 2]
    assert timeline.lanes_about("c.example:443", groups, lane_groups, set(), by_label) == []


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
    assert len(column(process["lanes"]["id"])) == len(local.connections) == 1
    assert len(column(process["bars"]["lane"])) == len(local.requests) == 3


def test_a_page_of_the_same_run_is_added_to_and_one_of_another_run_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    diagnosis, kept = synthetic.run(requests=10, connections=2, base_ns=time.time_ns())
    page = tmp_path / "run.html"

    def written_by_another_process(run_id: str) -> None:
        monkeypatch.setenv(_runfiles.ENV_RUN_ID, run_id)
        timeline.write(str(page), kept, diagnosis)
        # As if another process of that run had written it: this one's pid is not in it.
        page.write_text(page.read_text().replace(f'"pid":{os.getpid()}', '"pid":1'))

    written_by_another_process("run-a")
    timeline.write(str(page), kept, diagnosis)
    assert sorted(p["pid"] for p in page_data(page)["processes"]) == [1, os.getpid()]

    written_by_another_process("run-a")
    monkeypatch.setenv(_runfiles.ENV_RUN_ID, "run-b")
    timeline.write(str(page), kept, diagnosis)
    data = page_data(page)
    assert data["run_id"] == "run-b"
    assert [p["pid"] for p in data["processes"]] == [os.getpid()]


THROUGH_A_PROXY = """
import ssl
import sys
import conntrace
from conntrace import findings, timeline

conntrace.instrument()
timeline.install(sys.argv[3], findings.install())
import urllib3

context = ssl.create_default_context(cafile=sys.argv[4])
http = urllib3.ProxyManager(sys.argv[2], ssl_context=context)
for _ in range(2):
    http.request("GET", sys.argv[1])
"""


def test_a_tunnel_through_a_proxy_draws_the_connect_phase(tls_server: Any, ca: Any, tmp_path: Path):
    from ..proxy import LocalProxy

    local, proxy = tls_server(), LocalProxy(host_name="localhost")  # a name: looked up
    page, authority = tmp_path / "proxy.html", tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(authority))

    done = subprocess.run(
        [sys.executable, "-c", THROUGH_A_PROXY, local.url, proxy.url(), str(page), str(authority)],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    [process] = data = page_data(page)["processes"]
    assert len(data) == 1 and len(proxy.connects) == len(local.connections) == 1
    [steps] = [process["strings"][index] for index in column(process["lanes"]["steps"])]
    assert steps == "dns|tcp|proxy|tls"
    assert len(column(process["bars"]["lane"])) == len(local.requests) == 2
