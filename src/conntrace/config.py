"""Every setting of a traced run, read from the environment: OpenTelemetry's variables first.

conntrace's own settings are ``CONNTRACE_*`` variables. Each setting that ``conntrace-run``
offers as a flag is one ``Setting`` in ``SETTINGS``: the command line's parser, its
``--help`` and the README's table are all made from that list.

This module imports nothing beyond the standard library: ``conntrace-run`` reads it before
it execs the program, and the bootstrap reads it at interpreter start.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, unquote_plus, urlsplit

log = logging.getLogger("conntrace")

TRACES_EXPORTERS = ("otlp", "console", "none")
METRICS_EXPORTERS = ("otlp", "none")
PROTOCOLS = ("grpc", "http/protobuf")
SAMPLERS = (
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)
COLORS = ("auto", "always", "never")

DEFAULT_PORTS = {"grpc": 4317, "http/protobuf": 4318}


@dataclass(frozen=True)
class Config:
    """What a traced run does. ``load_config`` makes one from the environment."""

    service_name: str
    resource_attributes: tuple[tuple[str, str], ...] = ()
    # Empty when OTEL_TRACES_EXPORTER is "none". "console" is conntrace's terminal view.
    traces_exporters: tuple[str, ...] = ("otlp",)
    metrics_exporters: tuple[str, ...] = ()
    # The base address (OTEL_EXPORTER_OTLP_ENDPOINT); the traces path is added for HTTP.
    otlp_endpoint: str | None = None
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: used as it is, for either protocol.
    otlp_traces_endpoint: str | None = None
    otlp_protocol: str = "grpc"
    sampler: str = "parentbased_always_on"
    sampler_arg: float | None = None
    console: bool = False
    color: str = "auto"
    export_timeout: float = 3.0
    # Where to write the JSON report at exit (conntrace.report reads CONNTRACE_REPORT).
    report: str | None = None
    # Where to write the HTML timeline at exit.
    html: str | None = None
    # In AWS Lambda: the most time spent sending spans before a result is returned.
    lambda_flush_timeout: float = 2.0
    sdk_disabled: bool = False
    # Query keys (lower case) whose values url.full keeps; every other value is redacted.
    keep_query_values: tuple[str, ...] = ()

    @property
    def console_view(self) -> bool:
        return self.console or "console" in self.traces_exporters

    @property
    def otlp_traces(self) -> bool:
        return "otlp" in self.traces_exporters

    @property
    def otlp_metrics(self) -> bool:
        return "otlp" in self.metrics_exporters

    @property
    def traces_endpoint(self) -> str:
        """Where the OTLP span exporter sends to, exactly as the exporter takes it."""
        if self.otlp_traces_endpoint:
            return self.otlp_traces_endpoint
        base = self.otlp_endpoint or f"http://localhost:{DEFAULT_PORTS[self.otlp_protocol]}"
        return base if self.otlp_protocol == "grpc" else _signal_url(base, "traces")

    @property
    def metrics_endpoint(self) -> str:
        base = self.otlp_endpoint or f"http://localhost:{DEFAULT_PORTS[self.otlp_protocol]}"
        return base if self.otlp_protocol == "grpc" else _signal_url(base, "metrics")


def _signal_url(base: str, signal: str) -> str:
    return f"{base.rstrip('/')}/v1/{signal}"


# --- parsers: each takes the text of a variable or flag, and raises ValueError -------------------


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("expected a number of seconds above 0")
    return value


def parse_ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number from 0 to 1")
    return value


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return lowered

    return parse


def _names(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list, as OpenTelemetry's exporter variables take; "none" means empty."""

    def parse(text: str) -> tuple[str, ...]:
        names = [name.strip().lower() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            shown = ", ".join(map(repr, unknown)) or "nothing"
            raise ValueError(f"unknown exporter {shown} (expected {', '.join(choices)})")
        return tuple(dict.fromkeys(name for name in names if name != "none"))

    return parse


def parse_endpoint(text: str) -> str:
    url = text.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected a URL such as http://localhost:4317")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError("expected a URL such as http://localhost:4317") from None
    return url


def parse_resource_attributes(text: str) -> tuple[tuple[str, str], ...]:
    """``key=value,key=value``, values percent-encoded, as the OpenTelemetry spec has it."""
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value pairs, got {item.strip()!r}")
        pairs.append((unquote(key.strip()), unquote(value.strip())))
    return tuple(pairs)


_NOT_IN_A_KEY = re.compile(r"[=&#?\s]")


def parse_query_keys(text: str) -> tuple[str, ...]:
    """``page,limit``: query keys, compared without regard to case."""
    keys = [key.strip() for key in text.split(",") if key.strip()]
    bad = [key for key in keys if _NOT_IN_A_KEY.search(key)]
    if bad or not keys:
        shown = ", ".join(map(repr, bad)) or "nothing"
        raise ValueError(f"expected query keys such as page,limit, got {shown}")
    return tuple(dict.fromkeys(unquote_plus(key).lower() for key in keys))


def parse_name(text: str) -> str:
    if not text.strip():
        raise ValueError("expected a name")
    return text.strip()


# --- the settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting: its variable, its ``conntrace-run`` flag, and how to read it."""

    env: str
    flag: str
    field: str
    parse: Callable[[str], Any]
    metavar: str
    help: str
    default: str
    # A flag that takes no value sets the variable to "1".
    switch: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "OTEL_TRACES_EXPORTER",
        "--exporter",
        "traces_exporters",
        _names(TRACES_EXPORTERS),
        "NAMES",
        "where spans go: otlp, console (the terminal view on stderr), none; comma-separated",
        "otlp",
    ),
    Setting(
        "CONNTRACE_CONSOLE",
        "--console",
        "console",
        parse_bool,
        "",
        "also show the terminal view on stderr, whatever the exporter",
        "off",
        switch=True,
    ),
    Setting(
        "OTEL_SERVICE_NAME",
        "--service-name",
        "service_name",
        parse_name,
        "NAME",
        "service.name of the spans",
        "the program's name",
    ),
    Setting(
        "OTEL_RESOURCE_ATTRIBUTES",
        "--resource-attributes",
        "resource_attributes",
        parse_resource_attributes,
        "K=V,...",
        "more resource attributes, e.g. deployment.environment=dev",
        "none",
    ),
    Setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "--endpoint",
        "otlp_endpoint",
        parse_endpoint,
        "URL",
        "OTLP collector address",
        "http://localhost:4317 (grpc), http://localhost:4318 (http/protobuf)",
    ),
    Setting(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "--protocol",
        "otlp_protocol",
        _choice(PROTOCOLS),
        "PROTOCOL",
        "OTLP transport: grpc or http/protobuf",
        "grpc; http/protobuf in AWS Lambda",
    ),
    Setting(
        "OTEL_METRICS_EXPORTER",
        "--metrics-exporter",
        "metrics_exporters",
        _names(METRICS_EXPORTERS),
        "NAMES",
        "where metrics go: otlp or none",
        "none",
    ),
    Setting(
        "OTEL_TRACES_SAMPLER",
        "--sampler",
        "sampler",
        _choice(SAMPLERS),
        "NAME",
        f"which traces to keep: {', '.join(SAMPLERS)}",
        "parentbased_always_on",
    ),
    Setting(
        "OTEL_TRACES_SAMPLER_ARG",
        "--sampler-arg",
        "sampler_arg",
        parse_ratio,
        "RATIO",
        "the ratio of the traceidratio samplers, 0 to 1",
        "1.0",
    ),
    Setting(
        "CONNTRACE_EXPORT_TIMEOUT",
        "--export-timeout",
        "export_timeout",
        parse_seconds,
        "SECONDS",
        "bound on sending spans at exit (and on each export): a down collector costs no more",
        "3",
    ),
    Setting(
        "CONNTRACE_REPORT",
        "--report",
        "report",
        parse_name,
        "PATH",
        "write the JSON report (per-host totals and findings) to PATH at exit",
        "none",
    ),
    Setting(
        "CONNTRACE_HTML",
        "--html",
        "html",
        parse_name,
        "PATH",
        "write the HTML timeline (every connection and request on the run's clock, per-host "
        "counts, findings) to PATH at exit: one file, opens offline",
        "none",
    ),
    Setting(
        "CONNTRACE_KEEP_QUERY_VALUES",
        "--keep-query-values",
        "keep_query_values",
        parse_query_keys,
        "KEYS",
        "query keys whose values url.full keeps, e.g. page,limit; every other value is "
        "REDACTED (signatures and credentials always are)",
        "none",
    ),
    Setting(
        "CONNTRACE_COLOR",
        "--color",
        "color",
        _choice(COLORS),
        "WHEN",
        "colours in the terminal view: auto (only on a terminal, not with NO_COLOR), always, never",
        "auto",
    ),
)

# Read like the others, but with no flag of their own in conntrace-run.
_EXTRA_SETTINGS: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otlp_traces_endpoint", parse_endpoint),
    ("OTEL_SDK_DISABLED", "sdk_disabled", parse_bool),
    ("CONNTRACE_LAMBDA_FLUSH_TIMEOUT", "lambda_flush_timeout", parse_seconds),
)

SETTINGS_BY_FLAG = {setting.flag: setting for setting in SETTINGS}


def load_config(environ: Mapping[str, str], argv: Sequence[str] | None = None) -> Config:
    """The settings in ``environ``; a value that cannot be read warns once and falls back.

    ``argv`` is the process's command line (``sys.orig_argv`` by default), which names the
    service when ``OTEL_SERVICE_NAME`` does not.
    """
    values: dict[str, Any] = {}
    readers = [(s.env, s.field, s.parse) for s in SETTINGS] + list(_EXTRA_SETTINGS)
    for env, field, parse in readers:
        text = environ.get(env, "")
        if not text.strip():
            # OpenTelemetry treats an empty variable as an unset one.
            continue
        try:
            values[field] = parse(text)
        except ValueError as error:
            log.warning("conntrace: ignoring %s=%r: %s; using the default", env, text, error)
    lambda_function = environ.get("AWS_LAMBDA_FUNCTION_NAME")
    if "service_name" not in values:
        values["service_name"] = lambda_function or program_name(_process_argv(argv))
    if lambda_function and "otlp_protocol" not in values:
        values["otlp_protocol"] = "http/protobuf"
    if values.get("color", "auto") == "auto" and environ.get("NO_COLOR"):
        values["color"] = "never"
    return Config(**values)


def _process_argv(argv: Sequence[str] | None) -> Sequence[str]:
    if argv is not None:
        return argv
    orig = getattr(sys, "orig_argv", None)
    if orig:
        return orig
    # Python 3.9: sys.argv lacks the interpreter, and for -m the module's name.
    args = list(getattr(sys, "argv", []) or [])
    return [] if args[:1] == ["-m"] else ["python", *args]


_PYTHON = re.compile(r"^(python|pypy)[0-9.]*[a-z]?(\.exe)?$")
# Interpreter options that take a value as the next argument.
_OPTIONS_WITH_VALUE = {"-W", "-X", "--check-hash-based-pycs"}


def program_name(command: Sequence[str]) -> str:
    """A service name for a command line: ``python app.py`` is "app", ``python -m a.b`` is
    "a.b", ``aws s3 ls`` is "aws"; a bare interpreter or ``-c`` is "python"."""
    if not command:
        return "python"
    executable = os.path.basename(command[0])
    if not _PYTHON.match(executable):
        return _stem(executable)
    args = iter(command[1:])
    for arg in args:
        if arg == "-m":
            return next(args, "python")
        if arg.startswith("-m") and len(arg) > 2:
            return arg[2:]
        if arg == "-c" or arg.startswith("-c") or arg == "-":
            return "python"
        if arg in _OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return _stem(os.path.basename(arg))
    return "python"


def _stem(name: str) -> str:
    stem = name[:-3] if name.endswith(".py") else name
    return stem or "python"
