"""The HTML timeline: every TCP connection of a run on one wall clock, in one self-contained file.

``CONNTRACE_HTML=path`` (``conntrace-run --html PATH``) makes conntrace write it at exit.
``Timeline`` reads the ledger as the run goes: each connection setup (its DNS, TCP and
TLS steps, and a proxy's CONNECT), each attempt and the connection that carried it, and how
each connection ended (the server closed it, the pool discarded it, an error broke it, it
was dropped while idle, the client closed it, or it was still open at exit). At exit the
page is made of those records, kept compact (numbers in columns, repeated text in one
string table), and of the diagnosis's per-host counts and findings, the same
``report.section`` the JSON report writes: no second computation. The page's own script
draws the lanes on a canvas, merging bars narrower than a pixel, so that 100,000 requests
stay readable and the file small.

The page loads nothing: its script and style are inline, and its Content-Security-Policy
forbids every fetch. Request URLs are ``url.full`` as the spans have it (query values and
credentials redacted); headers and bodies are never recorded.

Like the report, each process of a run adds its own section as it exits, and the page is
rewritten from every section of its run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from . import _runfiles, ledger
from . import attributes as A
from ._redact import full_url
from .ledger import DISCARDED, Attempt, BaseSink, Connection, Pool, Setup

if TYPE_CHECKING:
    from .findings import Diagnosis

log = logging.getLogger("conntrace")

ENV_HTML = "CONNTRACE_HTML"
TIMELINE_VERSION = 1
# The page's data stays below this size: past it, the columns least needed to read the
# timeline (request URLs, then span ids) are left out, and the page says so.
MAX_DATA_BYTES = 9_000_000
_DATA_ID = "conntrace-data"

# How a connection ended, as the page names it.
END_SERVER = "server closed"
END_DROPPED = "dropped while idle"
END_DISCARDED = "discarded (pool full)"
END_BROKEN = "broken by an error"
END_CLIENT = "closed by the client"
END_OPEN = "open at exit"

# The columns of the bars, in the page's order; the trimmable ones, in the order dropped.
BAR_COLUMNS = (
    "lane",
    "start",
    "duration",
    "label",
    "method",
    "url",
    "status",
    "error",
    "attempt",
    "reused",
    "reason",
    "wait",
    "idle",
    "number",
    "trace",
    "span",
)
_TRIMMABLE = ("url", "span", "trace")
# The columns of the lanes; the page adds up those in _DELTA_LANE_COLUMNS.
_LANE_COLUMNS = (
    "group",
    "id",
    "opened",
    "ready",
    "closed",
    "end",
    "detail",
    "reason",
    "steps",
    "step_times",
)
_DELTA_LANE_COLUMNS = ("group", "id", "opened")
_TRIMMED_NAMES = {"url": "request URLs", "span": "span ids", "trace": "trace ids"}
# Times are in microseconds; ``span`` holds ids (or -1), ``url`` indexes into ``urls``, the
# others numbers (or indexes into ``strings``). Trace and span ids are in base64, a third
# shorter than hex; the page shows them in hex, as trace backends do.


class _Lane:
    """One TCP connection, from its setup to its end."""

    __slots__ = ("connection_id", "end", "end_detail", "end_ns", "group", "opened_ns", "setup")

    def __init__(self, group: int, connection_id: int, setup: Setup | None, seen_ns: int) -> None:
        self.group = group
        self.connection_id = connection_id
        self.setup = setup
        # When its setup began; for a connection opened before conntrace was reading, when
        # it was first seen.
        self.opened_ns = setup.start_ns if setup is not None else seen_ns
        self.end_ns: int | None = None
        self.end: str | None = None
        self.end_detail = ""


class Timeline(BaseSink):
    """Keeps what the page draws, as compact records; see the module's docstring."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (a forked child starts afresh)."""
        self._lock = threading.Lock()
        self.started_ns = time.time_ns()
        self._strings: dict[str, int] = {}
        self._groups: dict[tuple[str, int, int], int] = {}
        self._group_rows: list[list[Any]] = []
        self._lanes: dict[int, _Lane] = {}
        self._failed: list[tuple[int, Setup]] = []
        self._bars: dict[str, list[Any]] = {name: [] for name in BAR_COLUMNS}
        # The call label of each bar's lane, for the findings about an operation.
        self._labels_by_lane: dict[int, set[str]] = {}

    # --- the ledger's facts ---------------------------------------------------------------

    def connection_opened(self, setup: Setup, pool: Pool | None) -> None:
        with self._lock:
            group = self._group(setup.host, setup.port, pool)
            if setup.connection_id is None:
                self._failed.append((group, setup))
            else:
                self._lanes[setup.connection_id] = _Lane(group, setup.connection_id, setup, 0)

    def connection_closed(self, connection: Connection, closed_ns: int) -> None:
        with self._lock:
            lane = self._lanes.get(connection.id or 0)
            if lane is None or lane.end_ns is not None:
                return
            lane.end_ns = closed_ns
            if connection.close_cause in A.CLOSED_BY_SERVER:
                self._ended(lane, END_SERVER, _server_closed(connection.close_cause))

    def returned(self, pool: Pool, connection: Connection | None, how: str) -> None:
        if how != DISCARDED or connection is None:
            return
        with self._lock:
            lane = self._lanes.get(connection.id or 0)
            if lane is not None:
                detail = (
                    f"the pool keeps {pool.max_size} connection(s); this one came back to it full"
                )
                self._ended(lane, END_DISCARDED, detail)

    def attempt_ended(self, attempt: Attempt) -> None:
        pool = attempt.pool
        connection = attempt.connection
        setup = attempt.setup
        call = attempt.call
        sampled = bool(call.sampled)
        with self._lock:
            group = self._group(pool.host, pool.port, pool)
            lane_id = -1 - group
            if connection is not None and connection.id is not None and (setup is None or setup.ok):
                lane = self._lanes.get(connection.id)
                if lane is None:
                    # Opened before conntrace was reading: its setup is unknown.
                    lane = self._lanes[connection.id] = _Lane(
                        group, connection.id, None, attempt.start_ns
                    )
                lane_id = connection.id
                if attempt.closed_by_server:
                    self._ended(lane, END_SERVER, _server_closed(attempt.close_cause))
                elif attempt.error is not None and not connection.open:
                    self._ended(lane, END_BROKEN, type(attempt.error).__qualname__)
            for event in attempt.events:
                if event.name == A.EVENT_CONNECTION_DROPPED:
                    dropped = self._lanes.get(int(event.attributes.get(A.CONNECTION_ID, 0)))
                    if dropped is not None:
                        idle = float(event.attributes.get(A.CONNECTION_IDLE_MS, 0.0))
                        detail = (
                            f"found closed after {idle:.0f} ms idle, when the pool next handed"
                            " it out: the server (or something between) closed it"
                        )
                        self._ended(dropped, END_DROPPED, detail)
            self._labels_by_lane.setdefault(lane_id, set()).add(call.label)
            bars = self._bars
            bars["lane"].append(lane_id)
            bars["start"].append(attempt.start_ns)
            bars["duration"].append(max(attempt.end_ns - attempt.start_ns, 0) // 1000)
            bars["label"].append(self._string(call.label))
            bars["method"].append(self._string(attempt.method))
            bars["url"].append(full_url(pool.scheme, pool.host, pool.port, attempt.url))
            bars["status"].append(attempt.status or 0)
            bars["error"].append(self._string(attempt.error_type or ""))
            bars["attempt"].append(attempt.resend + 1)
            bars["reused"].append(1 if attempt.reused else 0)
            bars["reason"].append(self._string(attempt.reason or ""))
            bars["wait"].append(_us(attempt.wait_ms))
            bars["idle"].append(_us(attempt.idle_ms))
            bars["number"].append(attempt.request_number)
            bars["trace"].append(self._string(_id(call.trace_id, 16)) if sampled else -1)
            bars["span"].append(_id(attempt.span_id, 8) if sampled and attempt.span_id else -1)

    # --- the page's data ------------------------------------------------------------------

    def section(self, targets: Sequence[str] = (), end_ns: int | None = None) -> dict[str, Any]:
        """This process's groups, lanes and bars, in the page's compact form (times in
        microseconds from ``base_ms``); ``lanes_of`` names the lanes each of ``targets`` (a
        finding's host:port or call label) is about."""
        end_ns = end_ns or time.time_ns()
        with self._lock:
            # As the page lists them: hosts in the order first used, then pool, then opening.
            first_of: dict[str, int] = {}
            for index, row in enumerate(self._group_rows):
                first_of.setdefault(row[0], index)
            lanes = sorted(
                self._lanes.values(),
                key=lambda lane: (
                    first_of[self._group_rows[lane.group][0]],
                    self._group_rows[lane.group][1],
                    lane.opened_ns,
                ),
            )
            failed = list(self._failed)
            bars = {name: list(values) for name, values in self._bars.items()}
            strings = dict(self._strings)
            groups = [list(row) for row in self._group_rows]
            labels_by_lane = {lane: set(labels) for lane, labels in self._labels_by_lane.items()}
        starts = [lane.opened_ns for lane in lanes] + [setup.start_ns for _, setup in failed]
        base_ns = min([*starts, *bars["start"], self.started_ns])

        def us(ns: int) -> int:
            return (ns - base_ns) // 1000

        def text(value: str) -> int:
            index = strings.get(value)
            if index is None:
                index = strings[value] = len(strings)
            return index

        row_of = {lane.connection_id: row for row, lane in enumerate(lanes)}
        lane_columns: dict[str, list[int]] = {name: [] for name in _LANE_COLUMNS}
        for lane in lanes:
            setup = lane.setup
            opened = lane.opened_ns
            ready = setup.end_ns if setup is not None else opened
            end, detail = lane.end, lane.end_detail
            if end is None and lane.end_ns is not None:
                end, detail = END_CLIENT, "the program closed it, or dropped its pool or client"
            elif end is None:
                end, detail = END_OPEN, "still open when the program exited"
            names, times = _steps(setup, opened)
            for name, value in (
                ("group", lane.group),
                ("id", lane.connection_id),
                ("opened", us(opened)),
                ("ready", (ready - opened) // 1000),
                ("closed", ((lane.end_ns or end_ns) - ready) // 1000),
                ("end", text(end)),
                ("detail", text(detail)),
                ("reason", text(setup.reason if setup is not None else "")),
                ("steps", text(names)),
            ):
                lane_columns[name].append(value)
            lane_columns["step_times"] += times
        failed_rows = []
        for group, setup in failed:
            names, times = _steps(setup, setup.start_ns)
            error = type(setup.error).__qualname__ if setup.error else ""
            began, ended = us(setup.start_ns), us(setup.end_ns)
            failed_rows.append(
                [group, began, ended, text(setup.reason), text(error), text(names), times]
            )
        # Bars sorted by lane, then start: the page finds a bar under the pointer by bisection.
        rows = [row_of.get(lane, lane) if lane >= 0 else lane for lane in bars["lane"]]
        order = sorted(range(len(rows)), key=lambda i: (rows[i], bars["start"][i]))
        columns: dict[str, list[Any]] = {}
        urls: dict[str, int] = {}
        for name in BAR_COLUMNS:
            values = bars[name]
            if name == "url":
                columns[name] = [urls.setdefault(values[i], len(urls)) for i in order]
            elif name == "lane":
                columns[name] = _delta([rows[i] for i in order])
            elif name == "start":
                columns[name] = _delta([us(values[i]) for i in order])
            else:
                columns[name] = [values[i] for i in order]
        lanes_by_label: dict[str, list[int]] = {}
        for lane_id, labels in labels_by_lane.items():
            lane_row = row_of.get(lane_id, lane_id) if lane_id >= 0 else lane_id
            for label in labels:
                lanes_by_label.setdefault(label, []).append(lane_row)
        failed_groups = {group for group, _ in failed} | {-1 - lane for lane in rows if lane < 0}
        lanes_of = {
            target: _ranges(
                lanes_about(
                    target,
                    [group[0] for group in groups],
                    lane_columns["group"],
                    failed_groups,
                    lanes_by_label,
                )
            )
            for target in targets
        }
        for name in _DELTA_LANE_COLUMNS:
            lane_columns[name] = _delta(lane_columns[name])
        group_columns = {
            "target": _compact([text(group[0]) for group in groups]),
            "pool": _compact(_delta([group[1] for group in groups])),
            "scheme": _compact([text(group[2]) for group in groups]),
            "max_size": _compact([group[3] for group in groups]),
        }
        return {
            "base_ms": base_ns / 1e6,
            "end_us": us(end_ns),
            # Last: every text above is in it.
            "strings": sorted(strings, key=strings.__getitem__),
            "groups": group_columns,
            "lanes": {name: _compact(values) for name, values in lane_columns.items()},
            "failed": failed_rows,
            "bars": {name: _compact(values) for name, values in columns.items()},
            "urls": list(urls),
            "lanes_of": lanes_of,
        }

    # --- keeping ---------------------------------------------------------------------------

    def _string(self, value: str) -> int:
        index = self._strings.get(value)
        if index is None:
            index = self._strings[value] = len(self._strings)
        return index

    def _group(self, host: str, port: int, pool: Pool | None) -> int:
        number = pool.number if pool is not None else 0
        key = (host, port, number)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = len(self._group_rows)
            scheme = pool.scheme if pool is not None else ""
            max_size = pool.max_size if pool is not None else 0
            self._group_rows.append([f"{host}:{port}", number, scheme, max_size])
        return group

    @staticmethod
    def _ended(lane: _Lane, how: str, detail: str) -> None:
        # The first cause known is the true one: a later error on a closed connection is not.
        if lane.end is None:
            lane.end, lane.end_detail = how, detail


def _compact(values: list[Any]) -> list[Any] | dict[str, list[Any]]:
    """``values``, or ``{"runs": [value, count, ...]}`` when that is shorter (a column that
    repeats one status, one method, one label)."""
    runs: list[Any] = []
    for value in values:
        if runs and runs[-2] == value:
            runs[-1] += 1
        else:
            runs += [value, 1]
    return {"runs": runs} if len(runs) < len(values) else values


def _id(number: int, size: int) -> str:
    """A trace or span id in base64 (22 or 11 characters): the page shows it in hex."""
    return base64.b64encode(number.to_bytes(size, "big")).decode("ascii").rstrip("=")


def _us(ms: float | None) -> int:
    return -1 if ms is None else int(ms * 1000)


def _steps(setup: Setup | None, since_ns: int) -> tuple[str, list[int]]:
    """The setup's steps: their names (``dns|tcp|tls``: a few such strings serve a whole
    run), and for each, its start after the end of the one before (or ``since_ns``) and its
    duration, in microseconds."""
    names: list[str] = []
    times: list[int] = []
    previous = since_ns
    for step in setup.steps if setup is not None else ():
        names.append(step.name + (" (failed)" if step.error else ""))
        times += [(step.start_ns - previous) // 1000, (step.end_ns - step.start_ns) // 1000]
        previous = step.end_ns
    return "|".join(names), times


def _delta(values: list[int]) -> list[int]:
    """Each value as its difference from the one before: short numbers for sorted ones."""
    return [b - a for a, b in zip([0, *values], values)]


def _ranges(rows: Sequence[int]) -> str:
    """``0..3 7 -2``: lane rows as runs, for a finding's link (a host may have thousands)."""
    runs: list[list[int]] = []
    for row in sorted(set(rows)):
        if runs and runs[-1][1] == row - 1:
            runs[-1][1] = row
        else:
            runs.append([row, row])
    return " ".join(f"{a}..{b}" if a != b else str(a) for a, b in runs)


# --- the page ------------------------------------------------------------------------------------

_lock = threading.Lock()
_at_exit: dict[str, Any] = {}


def process_section(timeline: Timeline, diagnosis: Diagnosis) -> dict[str, Any]:
    """What this process saw: the report's section (counts, findings) and the timeline's.

    Each finding names the lanes it is about (``lanes``, as ``0..3 7``): its host's
    connections, or those that carried the calls of its operation.
    """
    from . import report

    summary = report.section(diagnosis)
    data = timeline.section([finding["target"] for finding in summary["findings"]])
    lanes_of = data.pop("lanes_of")
    for finding in summary["findings"]:
        finding["lanes"] = lanes_of[finding["target"]]
    return {"pid": summary["pid"], "program": summary["program"], "summary": summary, **data}


def lanes_about(
    target: str,
    group_targets: Sequence[str],
    lane_groups: Sequence[int],
    failed_groups: set[int],
    lanes_by_label: Mapping[str, Sequence[int]],
) -> list[int]:
    """The lane rows a finding about ``target`` (a host:port, or a call label) is about: the
    lanes of the host's groups, and their rows of failed connections (``-1 - group``); or
    those that carried calls of that label."""
    groups = {index for index, group in enumerate(group_targets) if group == target}
    if not groups:
        return sorted(lanes_by_label.get(target, []))
    lanes = [row for row, group in enumerate(lane_groups) if group in groups]
    return lanes + sorted((-1 - group for group in failed_groups & groups), reverse=True)


def document(sections: Sequence[Mapping[str, Any]], run_id: str = "") -> dict[str, Any]:
    """The page's data for a run made of these process sections."""
    from . import report

    return {
        "timeline_version": TIMELINE_VERSION,
        "run_id": run_id,
        "report": report.build([section["summary"] for section in sections], run_id),
        "processes": list(sections),
        "trimmed": [],
    }


def render(data: Mapping[str, Any]) -> str:
    """The self-contained page for ``document``'s data."""
    payload, trimmed = _payload(data)
    script = _asset("timeline.js")
    style = _asset("timeline.css")
    policy = (
        "default-src 'none'; "
        f"script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    run = data["report"]
    programs = ", ".join(dict.fromkeys(p["program"] for p in data["processes"])) or "python"
    title = f"conntrace timeline: {programs}"
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{style}</style>",
            "</head>",
            "<body>",
            '<header id="top">',
            f"<h1>{_e(title)}</h1>",
            f'<p class="made">{_e(_made(run, data))}</p>',
            "</header>",
            '<main id="page">',
            '<section id="timeline" aria-label="connections on the run\'s wall clock">',
            _legend(),
            '<div id="controls"><button type="button" id="zoom-in" title="zoom in (ctrl+wheel)">+'
            '</button><button type="button" id="zoom-out" title="zoom out">&minus;</button>'
            '<button type="button" id="zoom-fit">fit</button>'
            '<span id="axis-label"></span></div>',
            '<canvas id="axis" height="24"></canvas>',
            '<div id="lanes"><canvas id="plot" tabindex="0" aria-label="timeline: arrow keys'
            ' move between requests and connections"></canvas><div id="spacer"></div></div>',
            '<div id="tip" role="tooltip" hidden></div>',
            '<p id="said" class="visually-hidden" aria-live="polite"></p>',
            "</section>",
            '<aside id="side">',
            _summary(run, trimmed),
            _findings(data),
            "</aside>",
            "</main>",
            f'<script type="application/json" id="{_DATA_ID}">{payload}</script>',
            f"<script>{script}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _payload(data: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The data as JSON, safe inside a script element, and the columns left out of it to
    stay within ``MAX_DATA_BYTES``."""
    data = dict(data)
    text = _json(data)
    for column in _TRIMMABLE:
        if len(text) <= MAX_DATA_BYTES:
            break
        data["trimmed"] = [*data["trimmed"], column]
        processes = []
        for process in data["processes"]:
            bars = {**process["bars"], column: []}
            processes.append({**process, "bars": bars, **({"urls": []} if column == "url" else {})})
        data["processes"] = processes
        text = _json(data)
    return text, data["trimmed"]


def _json(data: Mapping[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":"))
    # "</script>" and "<!--" must not appear inside the element; JSON reads these escapes.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    return resources.files("conntrace").joinpath(name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _made(run: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    totals = run["totals"]
    processes = len(data["processes"])
    return (
        f"{totals.get('requests', 0)} requests, {totals.get('connections_opened', 0)} connections"
        f" opened, {totals.get('reused', 0)} reused; {processes} process"
        f"{'es' if processes != 1 else ''}; written {run['created']}"
    )


_LEGEND = (
    ("dns", "DNS"),
    ("tcp", "TCP"),
    ("proxy", "proxy CONNECT"),
    ("tls", "TLS"),
    ("reused", "request, reused connection"),
    ("fresh", "request, new connection"),
    ("retry", "retry"),
    ("error", "failed"),
    ("idle", "idle, connection open"),
    ("end", "connection end (hover: who closed it, why)"),
)


def _legend() -> str:
    items = "".join(
        f'<li><span class="swatch {kind}"></span>{_e(text)}</li>' for kind, text in _LEGEND
    )
    return f'<ul id="legend">{items}</ul>'


_HOST_COLUMNS = (
    ("requests", "requests"),
    ("reused", "reused"),
    ("opened", "connections opened"),
    ("pool_max_size", "pool size"),
    ("max_concurrency", "peak in use"),
    ("discarded", "discarded"),
    ("closed_by_server", "closed by server"),
    ("dropped_idle", "dropped idle"),
    ("dns_lookups", "DNS lookups"),
    ("request_ms", "request ms"),
)


def _summary(run: Mapping[str, Any], trimmed_columns: Sequence[str]) -> str:
    cards = []
    for host in run["hosts"]:
        target = f"{host['server_address']}:{host['server_port']}"
        cells = []
        for key, title in _HOST_COLUMNS:
            if key == "opened":
                opened = {k: v for k, v in host["connections_opened"].items() if v}
                why = ", ".join(f"{v} {k}" for k, v in opened.items())
                value = f"{sum(opened.values())}" + (f" ({why})" if why else "")
            else:
                value = host.get(key, "")
            cells.append(f"<dt>{_e(title)}</dt><dd>{_e(value)}</dd>")
        cards.append(
            f'<li class="host-card" data-target="{_e(target)}"><a href="#timeline" class="host"'
            f' data-target="{_e(target)}">{_e(target)}</a><dl>{"".join(cells)}</dl></li>'
        )
    trimmed = ""
    if trimmed_columns:
        left_out = ", ".join(_TRIMMED_NAMES[column] for column in trimmed_columns)
        trimmed = f'<p class="trimmed">Left out to keep this file under 10 MB: {_e(left_out)}.</p>'

    body = f"<ul>{''.join(cards)}</ul>" if cards else "<p>No requests.</p>"
    return f'<section id="hosts"><h2>Per host</h2>{body}{trimmed}</section>'


def _findings(data: Mapping[str, Any]) -> str:
    items = []
    for process in data["processes"]:
        pid = f" (pid {process['pid']})" if len(data["processes"]) > 1 else ""
        for finding in process["summary"]["findings"]:
            lanes = finding["lanes"]
            spans = "".join(
                f"<li><code>{_e(ref['trace_id'])}</code> / <code>{_e(ref['span_id'])}</code></li>"
                for ref in finding["spans"]
            )
            items.append(
                f'<li class="finding {_e(finding["severity"])}">'
                f'<a href="#timeline" class="finding-link" data-pid="{process["pid"]}"'
                f' data-target="{_e(finding["target"])}" data-lanes="{lanes}">'
                f'<span class="severity">{_e(finding["severity"])}</span> '
                f"<strong>{_e(finding['title'])}</strong>: {_e(finding['target'])}</a>"
                f"<p>{_e(finding['summary'])}</p>"
                f'<p class="advice"><b>advice:</b> {_e(finding["advice"])}</p>'
                f'<p class="id">{_e(finding["id"])}{pid}</p>'
                + (f"<details><summary>spans</summary><ul>{spans}</ul></details>" if spans else "")
                + "</li>"
            )
    body = f"<ol>{''.join(items)}</ol>" if items else "<p>No findings.</p>"
    return f'<section id="findings"><h2>Findings</h2>{body}</section>'


# --- at exit -----------------------------------------------------------------------------------


def write(path: str, timeline: Timeline, diagnosis: Diagnosis) -> None:
    """Add this process's section to the page at ``path`` and write it whole."""
    run_id = os.environ.get(_runfiles.ENV_RUN_ID, "")
    mine = process_section(timeline, diagnosis)
    with _runfiles.locked(path):
        sections = [s for s in _sections_of(path, run_id) if s.get("pid") != mine["pid"]]
        _runfiles.replace(path, render(document([*sections, mine], run_id)), ".conntrace-html-")


def _sections_of(path: str, run_id: str) -> list[dict[str, Any]]:
    """The process sections already in the page at ``path``, if it belongs to this run."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, ValueError):
        return []
    start = text.find(f'id="{_DATA_ID}">')
    end = text.find("</script>", start)
    if start < 0 or end < 0:
        return []
    try:
        existing = json.loads(text[start + len(_DATA_ID) + 6 : end])
    except ValueError:
        return []
    if not isinstance(existing, dict) or existing.get("timeline_version") != TIMELINE_VERSION:
        return []
    return _runfiles.sections_of_run(existing, run_id)


def install(path: str, diagnosis: Diagnosis) -> Timeline:
    """Read the ledger into a ``Timeline`` from now on, and write the page to ``path`` at exit."""
    with _lock:
        timeline = _at_exit.get("timeline")
        first = timeline is None
        if timeline is None:
            timeline = Timeline()
            ledger.add_sink(timeline)
            if hasattr(os, "register_at_fork"):
                # A forked child draws its own connections, not its parent's.
                os.register_at_fork(after_in_child=timeline.reset)
        _at_exit.update(path=path, diagnosis=diagnosis, timeline=timeline)
    _runfiles.run_id()
    if first:
        _runfiles.at_exit(_write_at_exit)
    return timeline


def _write_at_exit() -> None:
    with _lock:
        path, diagnosis, timeline = (
            _at_exit.get("path"),
            _at_exit.get("diagnosis"),
            _at_exit.get("timeline"),
        )
    if path is None or diagnosis is None or timeline is None:
        return
    try:
        write(path, timeline, diagnosis)
    except Exception as error:
        # The program has finished its work: a page that cannot be written is a warning.
        log.warning("conntrace: could not write the HTML timeline to %s: %s", path, error)


def _server_closed(cause: str | None) -> str:
    if cause == A.CLOSED_HTTP_1_0:
        return "the server answered in HTTP/1.0 without keep-alive"
    return "the server answered Connection: close"
