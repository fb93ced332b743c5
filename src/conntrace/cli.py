"""``conntrace-run [options] [--] program [args...]``: run a program with conntrace switched on.

The options become environment variables, conntrace's bootstrap goes first on
``PYTHONPATH``, and the program replaces this process (``exec``): its process id, exit code,
signals and standard streams are its own. Every Python process that inherits the
environment, the program and its children, starts conntrace from it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn, TextIO

from . import __version__
from .bootstrap import PATH as BOOTSTRAP_PATH
from .config import SETTINGS, SETTINGS_BY_FLAG, Setting, program_name

PROG = "conntrace-run"
USAGE = f"usage: {PROG} [options] [--] program [args...]"

_DESCRIPTION = """\
Run a program with conntrace: every HTTP request beneath botocore and urllib3 becomes
OpenTelemetry spans that say whether its connection was reused or opened anew, why, and
what DNS, TCP and TLS cost. Works for `python app.py`, `python -m package` and any
Python console script (`aws ...`), and for the Python processes they start."""

_OTHER_VARIABLES = (
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "full URL for spans; wins over OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    ("OTEL_EXPORTER_OTLP_HEADERS, ..._CERTIFICATE, ..._COMPRESSION", "read by the exporter itself"),
    ("OTEL_SDK_DISABLED=true", "run the program untraced"),
    ("NO_COLOR", "no colours in the terminal view (unless --color always)"),
    (
        "AWS_LAMBDA_FUNCTION_NAME",
        "in AWS Lambda: the default service name; OTLP over http/protobuf",
    ),
)

_EPILOG = """\
Each option can be set by its variable instead; an option given here wins over the variable.
A value in a variable that cannot be read is reported in one warning line and the default is
used; the program runs regardless. At exit, spans are sent within --export-timeout: a down
collector costs at most that, with one warning line, and never changes the exit code."""


class UsageError(Exception):
    pass


def help_text(width: int = 88) -> str:
    import textwrap  # only --help needs it: the launcher's start-up is on every run

    rows = [
        ("-h, --help", "show this help and exit"),
        ("--version", "print conntrace's version and exit"),
    ]
    for setting in SETTINGS:
        flag = setting.flag if setting.switch else f"{setting.flag} {setting.metavar}"
        rows.append((flag, f"{setting.help} [{setting.env}; default: {setting.default}]"))
    rows.append(("", ""))
    rows.extend(_OTHER_VARIABLES)
    column = max(len(flag) for flag, _ in rows if len(flag) < 32) + 4
    lines = [USAGE, "", _DESCRIPTION, "", "options:"]
    for flag, text in rows:
        if not flag:
            lines += ["", "other variables:"]
            continue
        wrapped = textwrap.wrap(text, width - column) or [""]
        if len(flag) + 2 >= column:
            lines.append(f"  {flag}")
        else:
            lines.append(f"  {flag.ljust(column - 2)}{wrapped.pop(0)}")
        lines.extend(" " * column + line for line in wrapped)
    return "\n".join([*lines, "", _EPILOG, ""])


_INFO = {"-h": "help", "--help": "help", "--version": "version"}


def parse(args: Sequence[str]) -> tuple[dict[str, str], list[str], str | None]:
    """The variables the options set, the program's command line, and "help" or "version"
    if one of those was asked for.

    Raises ``UsageError`` on an unknown option or a value that cannot be read.
    """
    variables: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            index += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg in _INFO:
            return variables, [], _INFO[arg]
        name, has_value, value = arg.partition("=")
        setting = SETTINGS_BY_FLAG.get(name)
        if setting is None:
            raise UsageError(f"unknown option {name}")
        if setting.switch:
            if has_value:
                raise UsageError(f"{name} takes no value")
            value = "1"
        elif not has_value:
            index += 1
            if index >= len(args):
                raise UsageError(f"{name} needs a value ({setting.metavar})")
            value = args[index]
        variables[setting.env] = _checked(setting, value)
        index += 1
    return variables, list(args[index:]), None


def _checked(setting: Setting, value: str) -> str:
    try:
        setting.parse(value)
    except ValueError as error:
        raise UsageError(f"{setting.flag} {value!r}: {error}") from None
    return value


# Variables that name files, read late (at exit, or at the first export): by then the
# program may have changed directory, and its children may start anywhere. The OTLP ones are
# read by the exporter itself.
PATH_VARIABLES = (
    "CONNTRACE_REPORT",
    "CONNTRACE_HTML",
    *(
        f"OTEL_EXPORTER_OTLP_{signal}{name}"
        for signal in ("", "TRACES_", "METRICS_", "LOGS_")
        for name in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE")
    ),
)


def environment(
    environ: Mapping[str, str], variables: Mapping[str, str], command: Sequence[str]
) -> dict[str, str]:
    """The program's environment: the caller's, the options, and the bootstrap on PYTHONPATH.

    Relative paths in it are made absolute here, where the user typed them.
    """
    env = dict(environ)
    env.update(variables)
    for name in PATH_VARIABLES:
        path = env.get(name, "").strip()
        if path and not os.path.isabs(path):
            env[name] = os.path.abspath(path)
    if not env.get("OTEL_SERVICE_NAME", "").strip() and not env.get("AWS_LAMBDA_FUNCTION_NAME"):
        # Named once here, so that the program's child processes report as the same service.
        env["OTEL_SERVICE_NAME"] = program_name(command)
    kept = [
        entry
        for entry in env.get("PYTHONPATH", "").split(os.pathsep)
        if entry and os.path.abspath(entry) != BOOTSTRAP_PATH
    ]
    env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_PATH, *kept])
    return env


def _write(stream: TextIO | None, text: str) -> None:
    """Write to a standard stream that the caller may have closed (``2>&-``): then nothing."""
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


def _fail(message: str, status: int, usage: bool = False) -> NoReturn:
    if usage:
        _write(sys.stderr, f"{USAGE}\n")
    _write(sys.stderr, f"{PROG}: {message}\n")
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        variables, command, info = parse(args)
    except UsageError as error:
        _fail(f"{error} (see {PROG} --help)", 2)
    if info == "help":
        _write(sys.stdout, help_text())
        return 0
    if info == "version":
        _write(sys.stdout, f"{PROG} (conntrace) {__version__}\n")
        return 0
    if not command:
        _fail("no program given", 2, usage=True)
    env = environment(os.environ, variables, command)
    # A closed stream (``>&-``, ``2>&-``) is None here: the program gets it closed as well.
    _write(sys.stdout, "")
    _write(sys.stderr, "")
    try:
        os.execvpe(command[0], command, env)
    except OSError as error:
        # As a shell does: 127 for a program not found, 126 for one that cannot run.
        status = 127 if isinstance(error, FileNotFoundError) else 126
        _fail(f"cannot run {command[0]}: {error.strerror or error}", status)


if __name__ == "__main__":
    sys.exit(main())
