"""The terminal view: each call as a small waterfall on stderr, and a summary per host at exit.

It reads the connection ledger: when a call ends, its record (attempts, connection setups
and their DNS, TCP and TLS steps, pool events) is printed as one block; at exit, the
summary prints the diagnosis's per-host counts (the same model as the JSON report) and its
findings. Sampling does not change what it shows.

Per host the summary counts calls, HTTP requests, connections opened and why, reuse, and
the time spent in DNS, TCP, a proxy's CONNECT and TLS as a share of the time spent in
requests. A host reached through a proxy is named with it ("via proxy host:port").
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, ClassVar, TypeVar

from . import attributes as A
from ._durations import COLUMN, format_ms
from .ledger import DNS, PROXY, TCP, Attempt, BaseSink, Call, Event, Server, Step

if TYPE_CHECKING:
    from .findings import Diagnosis, Finding, HostStats

T = TypeVar("T")

BAR_WIDTH = 20
# Labels are padded to at least this, so that successive waterfalls line up.
LABEL_WIDTH_MIN = 72
LABEL_WIDTH_MAX = 90


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
        style = self.style
        failed = _failure(call.error, style)
        head = f"{call.label} {call.status}" if call.status else call.label
        count = len(call.attempts)
        attempts = "1 attempt" if count == 1 else f"{count} attempts"
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

    def render(self) -> str:
        style = self.style
        timed = [line for line in self.lines if line.end]
        start = min(line.start for line in timed)
        total = max(1, max(line.end for line in timed) - start)
        needed = max(len(line.prefix) + len(line.label) for line in self.lines)
        width = min(LABEL_WIDTH_MAX, max(LABEL_WIDTH_MIN, needed))
        out = []
        for line in self.lines:
            text = line.prefix + line.label
            if len(text) > width:
                text = text[: width - 1] + "…"
            padded = text.ljust(width)
            painted = line.prefix + style.paint(padded[len(line.prefix) :], *line.styles)
            if not line.end:
                out.append(painted.rstrip())
                continue
            bar = _bar(line.start - start, line.end - start, total, style)
            duration = _format_ns(line.end - line.start).rjust(9)
            out.append(f"{painted}  {style.paint(bar, 'cyan')} {style.paint(duration, 'dim')}")
        return "\n".join(out) + "\n"


def _bar(start: int, end: int, total: int, style: Style) -> str:
    first = min(BAR_WIDTH - 1, int(start * BAR_WIDTH / total))
    last = max(first + 1, min(BAR_WIDTH, math.ceil(end * BAR_WIDTH / total)))
    return (" " * first + style.block * (last - first)).ljust(BAR_WIDTH, " ").join("||")


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


# --- the summary ---------------------------------------------------------------------------------


def render_summary(
    title: str, hosts: Sequence[HostStats], without_request: int, style: Style
) -> list[str]:
    """The end-of-run summary, one block per host."""
    lines = [style.paint(f"conntrace summary: {title} (pid {os.getpid()})", "bold")]
    for stats in hosts:
        lines.append(f"  {style.paint(stats.target, 'bold')}{_via(stats.proxy)}")
        lines.extend(f"    {line}" for line in _host_lines(stats, style))
    if without_request:
        lines.append(f"  calls answered without an HTTP request: {without_request}")
    return lines


def render_findings(findings: Sequence[Finding], style: Style) -> list[str]:
    """What to change, after the numbers: each finding as ``Finding.render`` words it."""
    if not findings:
        return []
    lines = [style.paint(f"  findings: {len(findings)}", "bold")]
    for finding in findings:
        first, *rest = finding.render().splitlines()
        colour = "yellow" if finding.severity == "warning" else "bold"
        lines.append(f"  {style.paint(first, colour)}")
        lines.extend(f"  {line}" for line in rest)
    return lines


def _host_lines(stats: HostStats, style: Style) -> list[str]:
    sep = f" {style.dot} "
    opened = sum(stats.opened.values())
    why = ", ".join(f"{reason} {count}" for reason, count in stats.opened.most_common())
    connections = f"connections opened {opened}" + (f" ({why})" if why else "")
    if stats.failed_connects:
        connections += f", failed {stats.failed_connects}"
    first = [f"calls {stats.calls}", f"requests {stats.requests}", connections]
    if stats.failed_requests:
        first.append(style.paint(f"failed requests {stats.failed_requests}", "red"))
    ratio = stats.reused / stats.requests if stats.requests else 0.0
    reuse = f"reused {stats.reused} of {stats.requests} requests ({ratio:.0%})"
    # Only the steps that happened: an IP address is not looked up, plain HTTP has no TLS.
    phases = sep.join(
        [f"DNS {format_ms(stats.dns_ms, COLUMN)}" if stats.dns_lookups else "no DNS lookup"]
        + [f"TCP {format_ms(stats.tcp_ms_all, COLUMN)}"]
        # Only tunnels have a CONNECT exchange; forwarded requests have none.
        + ([f"CONNECT {format_ms(stats.proxy_ms_all, COLUMN)}"] if stats.proxy_ms_all else [])
        + ([f"TLS {format_ms(stats.tls_ms_all, COLUMN)}"] if stats.tls_handshakes else [])
    )
    setup = (
        f"{phases} = {format_ms(stats.setup_ms_all, COLUMN)}, "
        f"{stats.setup_share:.0%} of {format_ms(stats.request_ms, COLUMN)} in requests"
    )
    if stats.waited:
        setup += f"{sep}pool wait {format_ms(stats.pool_wait_ms, COLUMN)}"
    return [sep.join(first), style.paint(reuse, "green" if ratio >= 0.5 else "yellow"), setup]


# --- the view ------------------------------------------------------------------------------------


class ConsoleView(BaseSink):
    """Prints a waterfall for each call as it ends, and ``print_summary`` at exit."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        color: str = "auto",
        title: str = "",
        diagnosis: Diagnosis | None = None,
    ) -> None:
        self._stream = stream
        self._color = color
        self.title = title
        self.diagnosis = diagnosis
        self._lock = threading.Lock()

    @property
    def stream(self) -> IO[str]:
        import sys

        return self._stream or sys.stderr

    def reset(self) -> None:
        """A forked child starts afresh (its diagnosis is reset with it)."""
        self._lock = threading.Lock()

    def call_ended(self, call: Call) -> None:
        block = _Block(Style(self.stream, self._color))
        if call.is_api:
            block.call(call)
        else:
            for attempt in call.attempts:
                block.attempt(attempt, "", "")
        if block.lines:
            self._write(block.render())

    def print_summary(self) -> None:
        diagnosis = self.diagnosis
        if diagnosis is None:
            return
        hosts = diagnosis.host_stats()
        without = diagnosis.calls_without_request
        if not hosts and not without:
            return
        style = Style(self.stream, self._color)
        lines = render_summary(self.title, hosts, without, style)
        lines.extend(render_findings(diagnosis.findings(), style))
        self._write("\n".join(lines) + "\n")

    def _write(self, text: str) -> None:
        try:
            with self._lock:
                stream = self.stream
                stream.write(text)
                stream.flush()
        except (OSError, ValueError, AttributeError):
            # stderr closed or gone: the view is a convenience, never the program's problem.
            pass
