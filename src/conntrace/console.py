"""The terminal view: each API call as a small waterfall on stderr, and a summary per host at exit.

It is a span processor over conntrace's own spans, so it shows exactly what an OpenTelemetry
backend would receive. Spans end child first (DNS, TCP and TLS, then the connection setup,
then the HTTP attempt, then the API call), so each is held under its parent until the
outermost one ends, and that one is printed with everything beneath it.

Per host the summary counts calls, HTTP requests, connections opened and why, reuse, and
the time spent in DNS, TCP and TLS as a share of the time spent in requests.
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, ClassVar

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from . import _runtime
from . import attributes as A
from ._durations import COLUMN, format_ms

if TYPE_CHECKING:
    from .findings import Diagnosis, Finding

BAR_WIDTH = 20
# Labels are padded to at least this, so that successive waterfalls line up.
LABEL_WIDTH_MIN = 72
LABEL_WIDTH_MAX = 90

CALL, ATTEMPT, SETUP, DNS, TCP, TLS = "call", "attempt", "setup", "dns", "tcp", "tls"
_PHASES = {A.SPAN_DNS: DNS, A.SPAN_CONNECT: TCP, A.SPAN_TLS: TLS}


def span_role(span: Any) -> str | None:
    """What a span is to this view, from what is known when it starts; None: not shown."""
    attributes = span.attributes or {}
    if attributes.get(A.RPC_SYSTEM) == A.RPC_SYSTEM_AWS and span.kind is SpanKind.CLIENT:
        return CALL
    scope = getattr(span, "instrumentation_scope", None)
    if scope is None or scope.name != "conntrace":
        return None
    name = span.name
    if name.startswith(A.SPAN_CONNECTION_SETUP):
        return SETUP
    for prefix, role in _PHASES.items():
        if name.startswith(prefix):
            return role
    if span.kind is SpanKind.CLIENT:
        return ATTEMPT
    return None


# --- what the summary counts ------------------------------------------------------------------


@dataclass
class HostStats:
    """What one ``host:port`` saw during the run."""

    calls: int = 0
    requests: int = 0
    reused: int = 0
    failed_requests: int = 0
    opened: Counter[str] = field(default_factory=Counter)
    failed_connects: int = 0
    request_ns: int = 0
    dns_ns: int = 0
    tcp_ns: int = 0
    tls_ns: int = 0

    @property
    def setup_ns(self) -> int:
        return self.dns_ns + self.tcp_ns + self.tls_ns


@dataclass
class Summary:
    title: str
    pid: int
    hosts: dict[str, HostStats] = field(default_factory=dict)
    # API calls answered without any HTTP request (botocore's Stubber, a failure before sending).
    calls_without_request: int = 0

    def host(self, name: str) -> HostStats:
        stats = self.hosts.get(name)
        if stats is None:
            stats = self.hosts[name] = HostStats()
        return stats

    @property
    def empty(self) -> bool:
        return not self.hosts and not self.calls_without_request


# --- styling ------------------------------------------------------------------------------------


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


def _ms_attribute(value: Any) -> str:
    return format_ms(float(value), COLUMN)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _host(attributes: Any) -> str | None:
    address = attributes.get(A.SERVER_ADDRESS)
    if not address:
        return None
    port = attributes.get(A.SERVER_PORT)
    return f"{address}:{port}" if port else str(address)


def _duration(span: ReadableSpan) -> int:
    return max(0, (span.end_time or 0) - (span.start_time or 0))


def _failed(span: ReadableSpan) -> bool:
    return span.status.status_code is StatusCode.ERROR


# --- the waterfall ------------------------------------------------------------------------------


@dataclass
class _Line:
    prefix: str
    label: str
    start: int
    end: int
    styles: tuple[str, ...] = ()


class _Block:
    """The lines of one printed waterfall: a root span and what ended beneath it."""

    def __init__(self, children: dict[int, list[ReadableSpan]]) -> None:
        self.children = children
        self.lines: list[_Line] = []

    def below(self, span: ReadableSpan) -> list[ReadableSpan]:
        return sorted(self.children.get(span.context.span_id, ()), key=lambda s: s.start_time or 0)

    def add(self, span: ReadableSpan, prefix: str, label: str, *styles: str) -> None:
        self.lines.append(_Line(prefix, label, span.start_time or 0, span.end_time or 0, styles))

    def walk(self, span: ReadableSpan, role: str, lead: str, branch: str, style: Style) -> None:
        self.add(span, lead + branch, *_describe(span, role, self.below(span), style))
        inner = lead + ((style.pipe if branch == style.tee else "   ") if branch else "")
        # Children and the span's notable events, in the order they happened.
        items: list[tuple[int, ReadableSpan | str, str]] = [
            (child.start_time or 0, child, child_role)
            for child, child_role in self._shown_below(span, role)
        ]
        items += [
            (event.timestamp, _note(event.name, event.attributes or {}), "")
            for event in span.events
            if event.name in _NOTES
        ]
        items.sort(key=lambda item: item[0])
        for index, (_, item, item_role) in enumerate(items):
            twig = style.elbow if index == len(items) - 1 else style.tee
            if isinstance(item, str):
                self.lines.append(_Line(inner + twig, item, 0, 0, ("yellow",)))
            else:
                self.walk(item, item_role, inner, twig, style)

    def _shown_below(self, span: ReadableSpan, role: str) -> list[tuple[ReadableSpan, str]]:
        shown = []
        for child in self.below(span):
            child_role = span_role(child)
            if child_role == SETUP and role == ATTEMPT:
                # The attempt's line already says the connection is new and why: its DNS,
                # TCP and TLS lines go straight beneath it.
                shown.extend(self._shown_below(child, child_role))
            elif child_role is not None:
                shown.append((child, child_role))
        return shown

    def render(self, style: Style) -> str:
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


def _describe(
    span: ReadableSpan, role: str, children: Sequence[ReadableSpan], style: Style
) -> tuple[str, ...]:
    """The label of one line and its styles."""
    attributes = span.attributes or {}
    error = attributes.get(A.ERROR_TYPE)
    failed = f" {style.cross} {error}" if error and _failed(span) else ""
    if role == CALL:
        attempts = attributes.get(A.AWS_ATTEMPTS)
        if attempts is None:
            attempts = sum(1 for child in children if span_role(child) == ATTEMPT)
        status = attributes.get(A.HTTP_RESPONSE_STATUS_CODE)
        head = f"{span.name} {status}" if status else span.name
        count = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        label = f"{head} {style.dot} {count if attempts else 'no HTTP request'}{failed}"
        return label, "bold", *_fail(failed)
    if role == ATTEMPT:
        return _describe_attempt(span, attributes, failed, style)
    if role == DNS:
        answers = attributes.get(A.DNS_ANSWERS) or ()
        shown = f" {style.arrow} {', '.join(answers)}" if answers else ""
        return f"DNS {attributes.get(A.DNS_QUESTION_NAME, '')}{shown}{failed}", *_fail(failed)
    if role == TCP:
        peer = attributes.get(A.NETWORK_PEER_ADDRESS) or attributes.get(A.SERVER_ADDRESS, "")
        port = attributes.get(A.NETWORK_PEER_PORT) or attributes.get(A.SERVER_PORT, "")
        return f"TCP connect {peer}:{port}{failed}", *_fail(failed)
    if role == TLS:
        version = attributes.get(A.TLS_PROTOCOL_VERSION)
        resumed = " resumed" if attributes.get(A.TLS_RESUMED) else ""
        label = f"TLS {version} handshake{resumed}" if version else "TLS handshake"
        return label + failed, *_fail(failed)
    # A setup span printed on its own (a connect made outside any traced request).
    return f"connection setup {_host(attributes) or ''}{failed}", *_fail(failed)


def _fail(failed: str) -> tuple[str, ...]:
    return ("red",) if failed else ()


def _describe_attempt(
    span: ReadableSpan, attributes: Any, failed: str, style: Style
) -> tuple[str, ...]:
    status = attributes.get(A.HTTP_RESPONSE_STATUS_CODE)
    head = f"{attributes.get(A.HTTP_REQUEST_METHOD, span.name)} {_host(attributes) or ''}"
    if status:
        head += f" {status}"
    connection = attributes.get(A.CONNECTION_ID)
    if attributes.get(A.CONNECTION_REUSED):
        parts = [f"reused #{connection}"]
        number = attributes.get(A.CONNECTION_REQUEST_NUMBER)
        if number:
            parts.append(f"{_ordinal(int(number))} request")
        idle = attributes.get(A.CONNECTION_IDLE_MS)
        if idle is not None:
            parts.append(f"idle {_ms_attribute(idle)}")
        how, color = f" {style.dot} ".join(parts), "green"
    else:
        reason = attributes.get(A.CONNECTION_REASON)
        where = f"new #{connection}" if connection is not None else "new connection"
        how, color = (f"{where} ({reason})" if reason else where), "yellow"
    if failed or (status and int(status) >= 400):
        color = "red"
    return f"{head} {style.dot} {how}{failed}", color


_NOTES = {
    A.EVENT_SERVER_CLOSED: "server closed #{id} after this response (Connection: close)",
    A.EVENT_CONNECTION_DROPPED: "#{id} was closed by the peer while idle {idle}: reconnecting",
    A.EVENT_POOL_DISCARDED: "pool full ({size} slots): #{id} discarded",
    A.EVENT_POOL_CREATED: "another connection pool for this host (pool {count})",
}


def _note(name: str, attributes: Any) -> str:
    idle = attributes.get(A.CONNECTION_IDLE_MS)
    return "! " + _NOTES[name].format(
        id=attributes.get(A.CONNECTION_ID, "?"),
        idle=_ms_attribute(idle) if idle is not None else "",
        size=attributes.get(A.POOL_MAX_SIZE, "?"),
        count=attributes.get(A.POOL_COUNT, "?"),
    )


# --- the summary --------------------------------------------------------------------------------


def render_summary(summary: Summary, style: Style) -> list[str]:
    """The end-of-run summary, one block per host."""
    lines = [style.paint(f"conntrace summary: {summary.title} (pid {summary.pid})", "bold")]
    for host, stats in summary.hosts.items():
        lines.append(f"  {style.paint(host, 'bold')}")
        lines.extend(f"    {line}" for line in _host_lines(stats, style))
    if summary.calls_without_request:
        lines.append(f"  calls answered without an HTTP request: {summary.calls_without_request}")
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
    share = stats.setup_ns / stats.request_ns if stats.request_ns else 0.0
    phases = sep.join(
        f"{name} {_format_ns(ns)}"
        for name, ns in (("DNS", stats.dns_ns), ("TCP", stats.tcp_ns), ("TLS", stats.tls_ns))
    )
    setup = (
        f"{phases} = {_format_ns(stats.setup_ns)}, "
        f"{share:.0%} of {_format_ns(stats.request_ns)} in requests"
    )
    return [sep.join(first), style.paint(reuse, "green" if ratio >= 0.5 else "yellow"), setup]


# --- the processor ------------------------------------------------------------------------------


class ConsoleView(SpanProcessor):  # type: ignore[misc]
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
        self.reset()

    @property
    def stream(self) -> IO[str]:
        import sys

        return self._stream or sys.stderr

    def reset(self) -> None:
        """Forget everything seen (a forked child starts afresh)."""
        self._lock = threading.Lock()
        # Every started span by id: its parent's id and its role here (None: not shown).
        self._open: dict[int, tuple[int | None, str | None]] = {}
        self._children: dict[int, list[ReadableSpan]] = {}
        self.summary = Summary(self.title, os.getpid())

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        try:
            parent = span.parent.span_id if span.parent is not None else None
            with self._lock:
                self._open[span.context.span_id] = (parent, span_role(span))
        except Exception:
            _runtime.report_internal_error("console.on_start")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._ended(span)
        except Exception:
            _runtime.report_internal_error("console.on_end")

    def _ended(self, span: ReadableSpan) -> None:
        with self._lock:
            parent, role = self._open.pop(span.context.span_id, (None, None))
            if role is None:
                return
            holder = self._shown_ancestor(parent)
            self._count(span, role, top=holder is None)
            if holder is not None:
                self._children.setdefault(holder, []).append(span)
                return
            block = _Block(self._children)
            style = Style(self.stream, self._color)
            block.walk(span, role, "", "", style)
            text = block.render(style)
            self._forget(span)
        self._write(text)

    def _shown_ancestor(self, span_id: int | None) -> int | None:
        # Spans that are not shown (another instrumentation's, the program's own) are
        # looked through, so a call still collects its attempts beneath them.
        while span_id is not None and span_id in self._open:
            parent, role = self._open[span_id]
            if role is not None:
                return span_id
            span_id = parent
        return None

    def _forget(self, span: ReadableSpan) -> None:
        for child in self._children.pop(span.context.span_id, ()):
            self._forget(child)

    def _count(self, span: ReadableSpan, role: str, top: bool) -> None:
        attributes = span.attributes or {}
        below = self._children.get(span.context.span_id, ())
        if role == CALL:
            attempt = next((c for c in below if span_role(c) == ATTEMPT), None)
            host = _host(attempt.attributes or {}) if attempt is not None else None
            if host is None:
                self.summary.calls_without_request += 1
            else:
                self.summary.host(host).calls += 1
            return
        host = _host(attributes)
        if host is None:
            return
        stats = self.summary.host(host)
        if role == ATTEMPT:
            stats.requests += 1
            stats.request_ns += _duration(span)
            if attributes.get(A.CONNECTION_REUSED):
                stats.reused += 1
            if attributes.get(A.CONNECTION_ID) is None and _failed(span):
                stats.failed_requests += 1
            if top:
                # An HTTP request made outside any API call is a call of its own.
                stats.calls += 1
        elif role == SETUP:
            if _failed(span) or attributes.get(A.CONNECTION_ID) is None:
                stats.failed_connects += 1
            else:
                stats.opened[str(attributes.get(A.CONNECTION_REASON, "?"))] += 1
            for child in below:
                phase = span_role(child)
                if phase == DNS:
                    stats.dns_ns += _duration(child)
                elif phase == TCP:
                    stats.tcp_ns += _duration(child)
                elif phase == TLS:
                    stats.tls_ns += _duration(child)

    def print_summary(self) -> None:
        with self._lock:
            if self.summary.empty:
                return
            style = Style(self.stream, self._color)
            lines = render_summary(self.summary, style)
        if self.diagnosis is not None:
            lines.extend(render_findings(self.diagnosis.findings(), style))
        self._write("\n".join(lines) + "\n")

    def _write(self, text: str) -> None:
        try:
            stream = self.stream
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            # stderr closed or gone: the view is a convenience, never the program's problem.
            pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
