"""The HTML timeline: a real program under ``conntrace-run --html``, opened in headless Chromium.

The servers count the connections they accepted and the requests on each; the page must draw
one lane per connection with its requests on it, link each finding to its host's lanes,
show a request's details when hovered or focused, and load nothing from anywhere.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conntrace import timeline

from ..cli.running import CONNTRACE_RUN, clean_environ
from ..servers import LocalServer
from . import synthetic
from .browser import Browser
from .conftest import ARTIFACTS

PROGRAM = Path(__file__).parent / "programs" / "traffic.py"
SECRET = "s3cr3t-value"
# What traffic.py does (see its docstring).
BUSY = 4 * 5
IDLE = 3
CLOSING = 2


def page_data(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="conntrace-data">(.*?)</script>', text)
    assert match is not None
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def column(values: Any) -> list[Any]:
    """A column of the page's data as a list (the page writes repeated values as runs)."""
    if isinstance(values, list):
        return values
    runs = values["runs"]
    return [value for value, count in zip(runs[::2], runs[1::2]) for _ in range(count)]


def lanes_of(browser: Browser, target: str) -> list[dict[str, Any]]:
    """The lanes the page drew for ``target``: requests on each, and how it ended."""
    return browser.evaluate(  # type: ignore[no-any-return]
        f"""(() => {{
          const t = conntraceTimeline;
          return t.rowsOfHost({json.dumps(target)}).map((r) => t.rows[r]).map((row) => ({{
            kind: row.kind, row: t.rows.indexOf(row),
            requests: t.barsOf(t.rows.indexOf(row)),
            end: row.kind === "lane" ? t.endOf(t.rows.indexOf(row)) : null,
          }}));
        }})()"""
    )


def served(local: LocalServer) -> list[int]:
    return sorted(connection.requests for connection in local.connections)


@pytest.fixture
def refused_url() -> Any:
    # Bound but not listening: connecting is refused, and no other test can take the port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_traced_run_draws_every_connection_and_request(
    server: Any, refused_url: str, browser: Browser, tmp_path: Path
) -> None:
    busy = server()
    idle = server(idle_timeout=0.2)
    closing = server(close_after_response=True)
    started = subprocess.run(
        [
            str(CONNTRACE_RUN),
            "--exporter",
            "none",
            "--html",
            "run.html",
            "python",
            str(PROGRAM),
            busy.url,
            idle.url,
            closing.url,
            refused_url,
        ],
        cwd=tmp_path,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    assert "traffic done" in started.stdout
    page = tmp_path / "run.html"
    text = page.read_text(encoding="utf-8")
    assert SECRET not in text
    assert "default-src 'none'" in text

    browser.open(page)
    shot = browser.screenshot(ARTIFACTS / "timeline-run.png")
    print(f"screenshot of the timeline: {shot}")

    # One lane per connection the servers accepted, one bar per request the program made.
    servers = {"busy": busy, "idle": idle, "closing": closing}
    accepted = sum(len(local.connections) for local in servers.values())
    made = BUSY + IDLE + CLOSING + 1
    assert sum(len(local.requests) for local in servers.values()) == made - 1
    dataset = browser.evaluate("({...document.getElementById('timeline').dataset})")
    assert int(dataset["lanes"]) == accepted
    assert int(dataset["bars"]) == made
    assert int(dataset["drawnBars"]) == made  # every lane fits the window: all drawn
    assert dataset["violations"] == "0"

    # Each host's lanes carry exactly the requests the server counted on each connection.
    ends: dict[str, list[str]] = {}
    for name, local in servers.items():
        lanes = [lane for lane in lanes_of(browser, f"127.0.0.1:{local.port}")]
        assert all(lane["kind"] == "lane" for lane in lanes)
        assert sorted(lane["requests"] for lane in lanes) == served(local), name
        ends[name] = [lane["end"] for lane in lanes]
    # How each ended, as the ledger knew it.
    assert ends["closing"] == [timeline.END_SERVER] * CLOSING
    # The program's PoolManager is dropped when main() returns, which closes what it kept.
    assert ends["idle"] == [timeline.END_DROPPED] * (IDLE - 1) + [timeline.END_CLIENT]
    discarded = ends["busy"].count(timeline.END_DISCARDED)
    assert discarded >= 1
    assert set(ends["busy"]) == {timeline.END_DISCARDED, timeline.END_CLIENT}
    [busy_host] = [h for h in page_data(page)["report"]["hosts"] if h["server_port"] == busy.port]
    assert busy_host["discarded"] == discarded

    # The refused connection: a row of failed connects, with the request that needed it.
    [failed] = lanes_of(browser, refused_url.removeprefix("http://"))
    assert failed["kind"] == "failed" and failed["requests"] == 1

    # A finding links to its host's lanes: clicking it marks them.
    busy_target = f"127.0.0.1:{busy.port}"
    link = f'a.finding-link[data-target="{busy_target}"]'
    finding_ids = browser.evaluate(
        f"[...document.querySelectorAll('{link}')].map((a) => a.closest('.finding')"
        ".querySelector('.id').textContent)"
    )
    assert "pool_too_small" in finding_ids
    box = browser.evaluate(
        f"(() => {{ const a = document.querySelector('{link}');"
        " a.scrollIntoView({block: 'center'}); const r = a.getBoundingClientRect();"
        " return {x: r.left + 10, y: r.top + r.height / 2}; })()"
    )
    browser.click(box["x"], box["y"])
    highlighted = browser.evaluate("conntraceTimeline.highlighted()")
    assert highlighted == [lane["row"] for lane in lanes_of(browser, busy_target)]
    idle_link = f'a.finding-link[data-target="127.0.0.1:{idle.port}"]'
    assert browser.evaluate(f"document.querySelector('{idle_link}').dataset.lanes") != ""

    # Hovering a request shows its call, attempt, status, duration, and the redacted URL.
    first_idle = lanes_of(browser, f"127.0.0.1:{idle.port}")[0]["row"]
    point = browser.evaluate(f"conntraceTimeline.barPoint({first_idle}, 0)")
    browser.mouse("mouseMoved", point["x"], point["y"])
    tip = browser.evaluate("document.getElementById('tip').hidden ? '' : tip.textContent")
    assert f"GET http://127.0.0.1:{idle.port}/ping?token=REDACTED" in tip
    assert "attempt 1" in tip and "status 200" in tip and "duration" in tip
    assert "new connection (first)" in tip
    browser.screenshot(ARTIFACTS / "timeline-hover.png")

    # Focusing the timeline shows the same; arrow keys move from request to request.
    browser.evaluate("document.getElementById('plot').focus()")
    browser.press("ArrowDown")
    before = browser.evaluate("tip.textContent")
    browser.press("ArrowRight")
    after = browser.evaluate("tip.textContent")
    assert "request 1 on it" in before and "request 2 on it" in after

    # Nothing but the page itself was loaded.
    assert browser.requests() == [page.as_uri()]


@pytest.mark.parametrize("connections", [50, 100_000], ids=["reused", "one-per-request"])
def test_a_hundred_thousand_requests_render_from_a_file_under_10_mb(
    connections: int, browser: Browser, tmp_path: Path
) -> None:
    diagnosis, kept = synthetic.run(
        requests=100_000, connections=connections, base_ns=time.time_ns()
    )
    page = tmp_path / "large.html"
    started = time.monotonic()
    timeline.write(str(page), kept, diagnosis)
    written = time.monotonic() - started
    size = page.stat().st_size
    print(f"100,000 requests: {size / 1e6:.2f} MB, written in {written:.1f} s")
    assert size < 10_000_000
    assert page_data(page)["trimmed"] == []

    seconds = browser.open(page, timeout=60)
    print(f"drawn by Chromium in {seconds:.2f} s")
    browser.screenshot(ARTIFACTS / f"timeline-100k-{connections}.png")
    dataset = browser.evaluate("({...document.getElementById('timeline').dataset})")
    assert (dataset["lanes"], dataset["bars"]) == (str(connections), "100000")
    assert browser.evaluate("conntraceTimeline.endOf(1)") == timeline.END_OPEN
    if connections == 50:
        # Every lane fits the window: every request is drawn, most merged into pixel columns.
        assert dataset["drawnBars"] == "100000"
    # Zoomed in, the bars are wide enough to hover one by one.
    for _ in range(8):
        browser.evaluate("document.getElementById('zoom-in').click()")
    lane, bar = (20, 1500) if connections == 50 else (70_000, 0)
    point = browser.evaluate(f"conntraceTimeline.barPoint({lane}, {bar})")
    browser.mouse("mouseMoved", point["x"], point["y"])
    tip = browser.evaluate("tip.textContent")
    assert re.search(rf"connection \d+, request {bar + 1} on it", tip)
    assert re.search(r"trace [0-9a-f]{32}", tip)
    assert browser.requests() == [page.as_uri()]
