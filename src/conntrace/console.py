"""The terminal view: calls as small waterfalls on stderr, and a summary per host at exit.

It reads the connection ledger: when a call ends, its record (attempts, connection setups
and their DNS, TCP and TLS steps, pool events) is printed as one block; at exit, the
summary prints the diagnosis's per-host counts (the same model as the JSON report) and its
findings. Sampling does not change what it shows.

How much is printed is the ``view`` setting: ``all`` prints every call; ``changes`` prints
a call whose shape (operation, host, reused or new and why, setup steps) differs from the
one before, and counts the repeats in one line, while a call that failed, retried, waited
for a pool slot or met a pool event is always printed whole; ``summary`` prints only the
summary. Every line fits the terminal's width. On a terminal, a call still running after
``LIVE_AFTER_S`` says so in one line.

Per host the summary counts calls, HTTP requests, connections opened and why, reuse, and
the time spent in DNS, TCP, a proxy's CONNECT and TLS as a share of the time spent in
requests. A host reached through a proxy is named with it ("via proxy host:port").
"""

from __future__ import annotations

import math
import os
import re
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, ClassVar, TypeVar

from . import attributes as A
from ._durations import COLUMN, format_ms
from .ledger import DNS, PROXY, TCP, TLS, Attempt, BaseSink, Call, Event, Server, Step

if TYPE_CHECKING:
    from .findings import Diagnosis, Finding, HostStats

T = TypeVar("T")

# The width when the stream is not a terminal and COLUMNS is not set, and the least honoured.
DEFAULT_WIDTH = 100
MIN_WIDTH = 40
# A call still running after this long is announced, on a terminal.
LIVE_AFTER_S = 2.0
_LIVE_CHECK_S = 0.25
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def terminal_width(stream: IO[str]) -> int:
    """``COLUMNS``, else the size of the terminal ``stream`` is on, else ``DEFAULT_WIDTH``."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return max(int(columns), MIN_WIDTH)
    try:
        # A terminal that reports 0 columns (a pseudo-terminal never sized) does not know.
        columns_now = os.get_terminal_size(stream.fileno()).columns if stream.isatty() else 0
    except (AttributeError, OSError, ValueError):
        columns_now = 0
    return max(columns_now, MIN_WIDTH) if columns_now else DEFAULT_WIDTH


def visible_length(text: str) -> int:
    return len(_ANSI.sub("", text))


# --- styling -------------------------------------------------------------------------------------


class Style:
    """ANSI colours when wanted, and box-drawing characters when the stream can encode them."""

    _CODES: ClassVar[dict[str, str]] = {
        "bold": "1",
        "dim": "2",
        "red": "31",
        "green": "32",
        "yellow": "33",
        "cyan": "36",
    }

    def __init__(self, stream: IO[str], color: str) -> None:
        if color == "always":
            self.color = True
        elif color == "never":
            self.color = False
        else:
            isatty = getattr(stream, "isatty", None)
            self.color = bool(isatty and isatty()) and not os.environ.get("NO_COLOR")
        encoding = getattr(stream, "encoding", None) or "ascii"
        try:
            "├└│─█·✗→".encode(encoding)
            self.unicode = True
        except (UnicodeEncodeError, LookupError):
            self.unicode = False
        self.tee, self.elbow, self.pipe = (
            ("├─ ", "└─ ", "│  ") if self.unicode else ("|- ", "`- ", "|  ")
        )
        self.block, self.dot, self.cross, self.arrow = (
            ("█", "·", "✗", "→") if self.unicode else ("#", "-", "x", "->")
        )
        self.ellipsis, self.dash = ("…", "\u2013") if self.unicode else ("...", "-")

    def shorten(self, text: str, width: int) -> str:
        """``text`` cut to ``width`` columns, the cut marked with an ellipsis."""
        if len(text) <= width:
            return text
        return text[: max(width - len(self.ellipsis), 0)] + self.ellipsis

    def paint(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        codes = ";".join(self._CODES[style] for style in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def _format_ns(nanoseconds: float) -> str:
    return format_ms(nanoseconds / 1e6, COLUMN)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --- the waterfall -------------------------------------------------------------------------------


@dataclass
class _Line:
    prefix: str
    label: str
    start: int
    end: int
    styles: tuple[str, ...] = ()


class _Block:
    """The lines of one printed waterfall: a call, or an attempt made outside any API call."""

    def __init__(self, style: Style) -> None:
        self.style = style
        self.lines: list[_Line] = []

    def call(self, call: Call) -> None:
        """An API call, or a urllib3 call with several attempts: a head line, the attempts
        beneath it (retries grouped under their call, each with its error)."""
        style = self.style
        failed = _failure(call.error, style)
        head = f"{call.label} {call.status}" if call.status else call.label
        count = len(call.attempts)
        attempts = "1 attempt" if count == 1 else f"{count} attempts"
        retried = [a.error_type for a in call.attempts[:-1] if a.error_type]
        if retried:
            attempts += f" (retried after {', '.join(retried)})"
        label = f"{head} {style.dot} {attempts if count else 'no HTTP request'}{failed}"
        self.lines.append(_Line("", label, call.start_ns, call.end_ns, ("bold", *_red(failed))))
        below: list[tuple[int, Attempt | Event]] = [(a.start_ns, a) for a in call.attempts]
        for twig, item in self._branches(below, call.events, ""):
            self.attempt(item, "", twig)

    def attempt(self, attempt: Attempt, lead: str, branch: str) -> None:
        style = self.style
        label, color = _describe_attempt(attempt, style)
        self.lines.append(_Line(lead + branch, label, attempt.start_ns, attempt.end_ns, (color,)))
        inner = lead + ((style.pipe if branch == style.tee else "   ") if branch else "")
        steps = attempt.setup.steps if attempt.setup is not None else []
        below: list[tuple[int, Step | Event]] = [(step.start_ns, step) for step in steps]
        for twig, step in self._branches(below, attempt.events, inner):
            failed = _failure(step.error, style)
            text = _describe_step(step, style) + failed
            self.lines.append(_Line(twig, text, step.start_ns, step.end_ns, _red(failed)))

    def _branches(
        self, below: list[tuple[int, T | Event]], events: Sequence[Event], lead: str
    ) -> Iterator[tuple[str, T]]:
        """What hangs beneath a line, in the order it happened: notable events become note
        lines here; each other item is yielded with the prefix of its line."""
        style = self.style
        below = below + [(event.time_ns, event) for event in events if event.name in _NOTES]
        below.sort(key=lambda item: item[0])
        for index, (_, item) in enumerate(below):
            twig = lead + (style.elbow if index == len(below) - 1 else style.tee)
            if isinstance(item, Event):
                self.lines.append(_Line(twig, _note(item), 0, 0, ("yellow",)))
            else:
                yield twig, item

    def render(self, width: int) -> str:
        """The block's lines, each at most ``width`` columns: label, bar, duration."""
        style = self.style
        timed = [line for line in self.lines if line.end]
        start = min((line.start for line in timed), default=0)
        total = max(1, max((line.end for line in timed), default=0) - start)
        bar_width = 20 if width >= 100 else 12
        # Two spaces, the bar between its two "|", a space, the duration in 9 columns.
        label_width = max(width - bar_width - 14, 10)
        out = []
        for line in self.lines:
            if not line.end:
                text = style.shorten(line.prefix + line.label, width)
                out.append(line.prefix + style.paint(text[len(line.prefix) :], *line.styles))
                continue
            padded = style.shorten(line.prefix + line.label, label_width).ljust(label_width)
            painted = line.prefix + style.paint(padded[len(line.prefix) :], *line.styles)
            bar = _bar(line.start - start, line.end - start, total, bar_width, style)
            duration = _format_ns(line.end - line.start).rjust(9)
            out.append(f"{painted}  {style.paint(bar, 'cyan')} {style.paint(duration, 'dim')}")
        return "\n".join(out) + "\n"


def _bar(start: int, end: int, total: int, width: int, style: Style) -> str:
    first = min(width - 1, int(start * width / total))
    last = max(first + 1, min(width, math.ceil(end * width / total)))
    return (" " * first + style.block * (last - first)).ljust(width, " ").join("||")


def _failure(error: BaseException | None, style: Style) -> str:
    return f" {style.cross} {type(error).__qualname__}" if error is not None else ""


def _red(failed: str) -> tuple[str, ...]:
    return ("red",) if failed else ()


def _describe_step(step: Step, style: Style) -> str:
    details = step.details
    # A step that reached a proxy (its lookup, the TCP connect, TLS to an HTTPS proxy).
    to_proxy = " (proxy)" if A.PROXY_ADDRESS in details and step.name != PROXY else ""
    if step.name == DNS:
        answers = details.get(A.DNS_ANSWERS) or ()
        shown = f" {style.arrow} {', '.join(answers)}" if answers else ""
        return f"DNS{to_proxy} {details.get(A.DNS_QUESTION_NAME, '')}{shown}"
    if step.name == TCP:
        peer = details.get(A.NETWORK_PEER_ADDRESS) or details.get(A.SERVER_ADDRESS, "")
        port = details.get(A.NETWORK_PEER_PORT) or details.get(A.SERVER_PORT, "")
        return f"TCP connect{to_proxy} {peer}:{port}"
    if step.name == PROXY:
        status = details.get(A.HTTP_RESPONSE_STATUS_CODE)
        answer = f" {status}" if status else ""
        via = _via((details.get(A.PROXY_ADDRESS, ""), details.get(A.PROXY_PORT, 0)))
        target = f"{details.get(A.SERVER_ADDRESS, '')}:{details.get(A.SERVER_PORT, '')}"
        return f"CONNECT {target}{via}{answer}"
    version = details.get(A.TLS_PROTOCOL_VERSION)
    resumed = " resumed" if details.get(A.TLS_RESUMED) else ""
    shown = f"TLS {version} handshake{resumed}" if version else "TLS handshake"
    return shown + to_proxy


def _via(proxy: Server | None) -> str:
    return f" via proxy {proxy[0]}:{proxy[1]}" if proxy is not None else ""


def _describe_attempt(attempt: Attempt, style: Style) -> tuple[str, str]:
    host, port = attempt.server
    head = f"{attempt.method} {host}:{port}{_via(attempt.proxy)}"
    if attempt.status:
        head += f" {attempt.status}"
    connection = attempt.connection
    number = connection.id if connection is not None and attempt.request_number else None
    if attempt.reused:
        parts = [f"reused #{number if number is not None else '?'}"]
        if attempt.request_number:
            parts.append(f"{_ordinal(attempt.request_number)} request")
        if attempt.idle_ms is not None:
            parts.append(f"idle {format_ms(attempt.idle_ms, COLUMN)}")
        how, color = f" {style.dot} ".join(parts), "green"
    else:
        where = f"new #{number}" if number is not None else "new connection"
        how, color = (f"{where} ({attempt.reason})" if attempt.reason else where), "yellow"
    if attempt.waited:
        how += f" {style.dot} pool wait {format_ms(attempt.wait_ms or 0.0, COLUMN)}"
    failed = _failure(attempt.error, style)
    if failed or (attempt.status and attempt.status >= 400):
        color = "red"
    return f"{head} {style.dot} {how}{failed}", color


_NOTES = {
    A.EVENT_SERVER_CLOSED: "#{id} was closed {how}",
    A.EVENT_CONNECTION_DROPPED: "#{id} was closed by the peer while idle {idle} ({peer}): "
    "reconnecting",
    A.EVENT_CLIENT_CLOSED: "#{id} was closed {how}: reconnecting",
    A.EVENT_POOL_DISCARDED: "pool full ({size} slots): #{id} discarded",
    A.EVENT_POOL_CREATED: "another connection pool for this host (pool {count})",
    A.EVENT_CONNECTIONS_NOT_RETURNED: (
        "{out} connections still out of the pool with no request in progress: "
        "response bodies not read or closed"
    ),
}


def _note(event: Event) -> str:
    from .findings.model import CLOSE_CAUSE_WORDS

    attributes = event.attributes
    idle = attributes.get(A.CONNECTION_IDLE_MS)
    cause = attributes.get(A.CONNECTION_CLOSE_CAUSE)
    return "! " + _NOTES[event.name].format(
        id=attributes.get(A.CONNECTION_ID, "?"),
        idle=format_ms(float(idle), COLUMN) if idle is not None else "",
        size=attributes.get(A.POOL_MAX_SIZE, "?"),
        count=attributes.get(A.POOL_COUNT, "?"),
        how=CLOSE_CAUSE_WORDS.get(str(cause), "by the peer"),
        out=attributes.get(A.POOL_CHECKED_OUT, "?"),
        peer="reset" if cause == A.CLOSED_PEER_RESET else "FIN",
    )


# --- what is worth a line ------------------------------------------------------------------------


def _unusual(call: Call) -> bool:
    """Printed whole at every level but ``summary``, never folded into a run of repeats: a
    failure, a retry, a wait for a pool slot."""
    if call.error is not None or len(call.attempts) > 1:
        return True
    return any(attempt.error_type is not None or attempt.waited for attempt in call.attempts)


def _notes(events: Sequence[Event]) -> tuple[str, ...]:
    return tuple(sorted(event.name for event in events if event.name in _NOTES))


def _shape(call: Call) -> tuple[Any, ...]:
    """What makes two calls "the same" for ``changes``: operation, host, reused or new and
    why, the setup's steps and the pool events noted; not timings or connection numbers.
    A pool event is printed the first time; the same event on each later call of the same
    shape (a server that closes every connection) is counted with it."""
    return (
        call.is_api,
        call.label,
        call.status,
        _notes(call.events),
        tuple(
            (
                attempt.method,
                attempt.server,
                attempt.proxy,
                attempt.status,
                attempt.reused,
                attempt.reason,
                tuple(step.name for step in attempt.setup.steps) if attempt.setup else (),
                _notes(attempt.events),
            )
            for attempt in call.attempts
        ),
    )


def _kind(call: Call) -> str:
    """How a run of same-shaped calls got their connections, in a few words."""
    first = call.attempts[0] if call.attempts else None
    if first is None:
        return "no HTTP request"
    if first.reused:
        return "reused"
    return f"new ({first.reason})" if first.reason else "new"


class _Run:
    """Calls of one shape seen after the one printed for it: a count and a duration range."""

    __slots__ = ("count", "high_ms", "kind", "low_ms", "shape")

    def __init__(self, shape: tuple[Any, ...], kind: str) -> None:
        self.shape = shape
        self.kind = kind
        self.count = 0
        self.low_ms = math.inf
        self.high_ms = 0.0

    def add(self, call: Call) -> None:
        ms = (call.end_ns - call.start_ns) / 1e6
        self.count += 1
        self.low_ms = min(self.low_ms, ms)
        self.high_ms = max(self.high_ms, ms)

    def line(self, style: Style, width: int) -> str:
        low, high = format_ms(self.low_ms, COLUMN), format_ms(self.high_ms, COLUMN)
        if low != high:
            # "21.4 to 24.9 ms" with a dash: the unit once, when both ends share it.
            low_number, _, low_unit = low.partition(" ")
            high_unit = high.partition(" ")[2]
            low = low_number if low_unit == high_unit else low
            span = f"{low}{style.dash}{high}"
        else:
            span = high
        text = f"{style.ellipsis} {self.count} more like this ({self.kind}, {span})"
        return style.paint(style.shorten(text, width), "dim")


def _step_now(attempt: Attempt) -> str:
    """The step an attempt in progress is in: waiting for a pool slot, a setup step
    (dns, tcp, tls), or the request itself."""
    if attempt.connection is None:
        return "waiting for a connection"
    setup = attempt.setup
    if setup is None or setup.ok or setup.error is not None:
        return "request"
    done = [step.name for step in setup.steps]
    if not done:
        return DNS
    if done[-1] == DNS:
        return TCP
    https = attempt.pool.scheme == "https"
    if done[-1] == TCP and https and attempt.proxy is not None:
        return "proxy CONNECT"
    if done[-1] in (TCP, PROXY) and https:
        return TLS
    return "request"


# --- the summary ---------------------------------------------------------------------------------


@dataclass
class RunTimes:
    """The run as a whole: the requests' wall time, their summed time, the peak in flight."""

    wall_ms: float
    summed_ms: float
    peak_in_flight: int


def render_summary(
    title: str,
    hosts: Sequence[HostStats],
    without_request: int,
    style: Style,
    width: int = DEFAULT_WIDTH,
    times: RunTimes | None = None,
) -> list[str]:
    """The end-of-run summary, one block per host, each line at most ``width`` columns."""
    head = style.shorten(f"conntrace summary: {title} (pid {os.getpid()})", width)
    lines = [style.paint(head, "bold")]
    sep = f" {style.dot} "
    if times is not None and times.summed_ms:
        # Summed over threads, request time exceeds the wall time: the ratio is the
        # concurrency that the per-call bars, each on its own scale, cannot show.
        parts = [
            f"requests took {format_ms(times.summed_ms, COLUMN)} summed",
            f"{format_ms(times.wall_ms, COLUMN)} of wall time",
            f"peak {times.peak_in_flight} in flight",
        ]
        lines.extend(_fit(parts, sep, "  ", width, style))
    for stats in hosts:
        target = style.shorten(f"{stats.target}{_via(stats.proxy)}", width - 2)
        lines.append("  " + style.paint(target, "bold"))
        for parts, colour in _host_parts(stats, style):
            lines.extend(
                style.paint(line, *colour) for line in _fit(parts, sep, "    ", width, style)
            )
    if without_request:
        lines.append(f"  calls answered without an HTTP request: {without_request}")
    return lines


def render_findings(
    findings: Sequence[Finding], style: Style, width: int = DEFAULT_WIDTH, whole: bool = True
) -> list[str]:
    """What to change, after the numbers: each finding as ``Finding.render`` words it, its
    prose wrapped to ``width``. Unless ``whole``, the findings that follow from another one
    for the same server (``CONSEQUENCES``) are named in one line under it."""
    from .findings.rules import CONSEQUENCES

    if not findings:
        return []
    causes = {finding.target for finding in findings if finding.id not in CONSEQUENCES}
    folded = {} if whole else _folded(findings, causes)
    under = set(folded)
    lines = [style.paint(f"  findings: {len(findings)}", "bold")]
    for finding in findings:
        if finding.id in CONSEQUENCES and finding.target in under:
            continue
        first, *rest = finding.render().splitlines()
        colour = "yellow" if finding.severity == "warning" else "bold"
        lines.extend(style.paint(line, colour) for line in _wrap(f"  {first}", width))
        for line in rest:
            lines.extend(_wrap(f"  {line}", width))
        also = folded.pop(finding.target, None)
        if also:
            lines.extend(_wrap(f"    also, from the same cause: {', '.join(also)}", width))
    return lines


def _folded(findings: Sequence[Finding], causes: set[str]) -> dict[str, list[str]]:
    """The ids of the findings that follow from another for their server, by server."""
    from .findings.rules import CONSEQUENCES

    folded: dict[str, list[str]] = {}
    for finding in findings:
        if finding.id in CONSEQUENCES and finding.target in causes:
            folded.setdefault(finding.target, []).append(finding.id)
    return folded


def _wrap(line: str, width: int) -> list[str]:
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.wrap(
        line, width, initial_indent="", subsequent_indent=indent + "  ", break_on_hyphens=False
    ) or [line]


def _fit(parts: Sequence[str], sep: str, indent: str, width: int, style: Style) -> list[str]:
    """``parts`` joined by ``sep``, on as few lines of at most ``width`` as they fit."""
    lines: list[str] = []
    current = ""
    for part in parts:
        if current and len(indent) + len(current) + len(sep) + len(part) > width:
            lines.append(indent + current)
            current = ""
        current = f"{current}{sep}{part}" if current else part
    if current:
        lines.append(indent + current)
    return [style.shorten(line, width) for line in lines]


def _host_parts(stats: HostStats, style: Style) -> list[tuple[list[str], tuple[str, ...]]]:
    opened = sum(stats.opened.values())
    why = ", ".join(f"{reason} {count}" for reason, count in stats.opened.most_common())
    connections = f"connections opened {opened}" + (f" ({why})" if why else "")
    if stats.failed_connects:
        connections += f", failed {stats.failed_connects}"
    first = [f"calls {stats.calls}", f"requests {stats.requests}", connections]
    if stats.failed_requests:
        first.append(f"failed requests {stats.failed_requests}")
    ratio = stats.reused / stats.requests if stats.requests else 0.0
    reuse = f"reused {stats.reused} of {stats.requests} requests ({ratio:.0%})"
    # Only the steps that happened: an IP address is not looked up, plain HTTP has no TLS.
    phases = (
        [f"DNS {format_ms(stats.dns_ms, COLUMN)}" if stats.dns_lookups else "no DNS lookup"]
        + [f"TCP {format_ms(stats.tcp_ms_all, COLUMN)}"]
        # Only tunnels have a CONNECT exchange; forwarded requests have none.
        + ([f"CONNECT {format_ms(stats.proxy_ms_all, COLUMN)}"] if stats.proxy_ms_all else [])
        + ([f"TLS {format_ms(stats.tls_ms_all, COLUMN)}"] if stats.tls_handshakes else [])
    )
    phases[-1] += f" = {format_ms(stats.setup_ms_all, COLUMN)}"
    phases.append(f"{stats.setup_share:.0%} of {format_ms(stats.request_ms, COLUMN)} in requests")
    if stats.waited:
        phases.append(f"pool wait {format_ms(stats.pool_wait_ms, COLUMN)}")
    parts: list[tuple[list[str], tuple[str, ...]]] = [
        (first, ("red",) if stats.failed_requests else ()),
        ([reuse], ("green" if ratio >= 0.5 else "yellow",)),
        (phases, ()),
    ]
    top = stats.top_origin
    if top is not None:
        origin, service, pools = top
        what = f"{service} client" if service else f"{origin.library} pool"
        more = len(stats.origins) - 1
        made = f"{what} made at {origin.where()} ({pools} {'pool' if pools == 1 else 'pools'})"
        parts.append(([made + (f" and {more} more places" if more else "")], ()))
    return parts


# --- the view ------------------------------------------------------------------------------------


class ConsoleView(BaseSink):
    """Prints calls as they end (as much as ``view`` asks), and ``print_summary`` at exit."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        color: str = "auto",
        title: str = "",
        diagnosis: Diagnosis | None = None,
        view: str = "changes",
    ) -> None:
        self._stream = stream
        self._color = color
        self.title = title
        self.diagnosis = diagnosis
        self.view = view
        self.reset()

    @property
    def stream(self) -> IO[str]:
        import sys

        return self._stream or sys.stderr

    def reset(self) -> None:
        """A forked child starts afresh (its diagnosis is reset with it)."""
        self._lock = threading.Lock()
        # The run of same-shaped calls not printed yet (``changes``).
        self._run: _Run | None = None
        # Calls in progress, by id, while the live check watches them (on a terminal only).
        self._running: dict[int, Call] = {}
        self._watcher: threading.Thread | None = None
        self._stopped = threading.Event()
        try:
            self._live = self.view != "summary" and self.stream.isatty()
        except (AttributeError, OSError, ValueError):
            self._live = False

    # --- the ledger's facts --------------------------------------------------------------

    def call_started(self, call: Call) -> None:
        if not self._live:
            return
        with self._lock:
            self._running[id(call)] = call
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name="conntrace-console", daemon=True
                )
                try:
                    self._watcher.start()
                except RuntimeError:
                    # No new threads at interpreter exit: no live lines then.
                    self._live = False

    def call_ended(self, call: Call) -> None:
        if self._live:
            with self._lock:
                self._running.pop(id(call), None)
        if self.view == "summary" or not (call.is_api or call.attempts):
            return
        style = Style(self.stream, self._color)
        width = terminal_width(self.stream)
        with self._lock:
            pending = ""
            if self.view == "changes":
                # Decided before anything is drawn: a repeat costs a comparison and a count.
                if _unusual(call):
                    pending = self._take_run(style, width)
                else:
                    shape = _shape(call)
                    if self._run is not None and self._run.shape == shape:
                        self._run.add(call)
                        return
                    pending = self._take_run(style, width)
                    self._run = _Run(shape, _kind(call))
            self._write(pending + self._draw(call, style).render(width))

    @staticmethod
    def _draw(call: Call, style: Style) -> _Block:
        block = _Block(style)
        if call.is_api or len(call.attempts) > 1:
            block.call(call)
        else:
            block.attempt(call.attempts[0], "", "")
        return block

    def _take_run(self, style: Style, width: int) -> str:
        """The line of the run of repeats so far, if it has any (under the lock)."""
        run, self._run = self._run, None
        return run.line(style, width) + "\n" if run is not None and run.count else ""

    def _watch(self) -> None:
        """Say once of each call still running after ``LIVE_AFTER_S``: its attempt and step."""
        announced: set[int] = set()
        while not self._stopped.wait(_LIVE_CHECK_S):
            limit = time.time_ns() - int(LIVE_AFTER_S * 1e9)
            with self._lock:
                slow = [
                    call
                    for key, call in self._running.items()
                    if call.start_ns < limit and key not in announced
                ]
                announced.intersection_update(self._running)
            for call in slow:
                announced.add(id(call))
                self._announce(call)

    def _announce(self, call: Call) -> None:
        style = Style(self.stream, self._color)
        seconds = (time.time_ns() - call.start_ns) / 1e9
        attempt = call.attempts[-1] if call.attempts else None
        where = "before its first request"
        if attempt is not None:
            where = f"attempt {len(call.attempts)}, {_step_now(attempt)}"
            host = "{}:{}".format(*attempt.server)
            where += f" ({host})" if host != call.label else ""
        text = f"{style.ellipsis} {call.label} still running after {seconds:.1f} s: {where}"
        line = style.paint(style.shorten(text, terminal_width(self.stream)), "yellow")
        with self._lock:
            self._write(line + "\n")

    # --- at exit -------------------------------------------------------------------------

    def print_summary(self) -> None:
        self._stopped.set()
        style = Style(self.stream, self._color)
        width = terminal_width(self.stream)
        with self._lock:
            pending = self._take_run(style, width)
            if pending:
                self._write(pending)
        diagnosis = self.diagnosis
        if diagnosis is None:
            return
        hosts = diagnosis.host_stats()
        without = diagnosis.calls_without_request
        if not hosts and not without:
            return
        times = RunTimes(
            diagnosis.wall_ms,
            sum(stats.request_ms for stats in hosts),
            diagnosis.peak_in_flight,
        )
        lines = render_summary(self.title, hosts, without, style, width, times)
        lines.extend(render_findings(diagnosis.findings(), style, width, self.view == "all"))
        with self._lock:
            self._write("\n".join(lines) + "\n")

    def _write(self, text: str) -> None:
        """Write ``text`` now (the caller holds the lock, so that blocks never interleave)."""
        try:
            stream = self.stream
            stream.write(text)
            stream.flush()
        except (OSError, ValueError, AttributeError):
            # stderr closed or gone: the view is a convenience, never the program's problem.
            pass
