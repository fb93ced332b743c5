"""What ``conntrace-run`` does with its own arguments: help, version, and bad input."""

from __future__ import annotations

import pytest

import conntrace
from conntrace.config import SETTINGS

from .running import conntrace_run


def test_help_documents_every_flag_and_variable():
    done = conntrace_run(["--help"])

    assert done.returncode == 0
    assert done.stdout.startswith("usage: conntrace-run [options] [--] program [args...]")
    for setting in SETTINGS:
        assert setting.flag in done.stdout
        assert setting.env in done.stdout
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in done.stdout


def test_version():
    done = conntrace_run(["--version"])

    assert done.returncode == 0
    assert done.stdout == f"conntrace-run (conntrace) {conntrace.__version__}\n"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--frobnicate"], "unknown option --frobnicate"),
        (["--exporter", "zipkin"], "--exporter 'zipkin': unknown exporter 'zipkin'"),
        (["--exporter=otlp,jaeger"], "--exporter 'otlp,jaeger': unknown exporter 'jaeger'"),
        (["--protocol", "udp"], "--protocol 'udp': expected one of grpc, http/protobuf"),
        (["--export-timeout", "soon"], "--export-timeout 'soon': expected a number of seconds"),
        (["--console=yes"], "--console takes no value"),
    ],
)
def test_bad_option_exits_2_with_one_line_before_the_program_starts(args, reason, tmp_path):
    marker = tmp_path / "started"
    program = ["python", "-c", f"open({str(marker)!r}, 'w').close()"]

    done = conntrace_run([*args, *program])

    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"conntrace-run: {reason}")
    assert not marker.exists()


def test_option_missing_its_value_exits_2():
    done = conntrace_run(["--endpoint"])

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "conntrace-run: --endpoint needs a value (URL) (see conntrace-run --help)"
    ]


def test_missing_program_prints_usage_and_exits_2():
    done = conntrace_run(["--exporter", "console"])

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "usage: conntrace-run [options] [--] program [args...]",
        "conntrace-run: no program given",
    ]


def test_program_not_found_exits_127_like_a_shell():
    done = conntrace_run(["no-such-program-anywhere"])

    assert done.returncode == 127
    assert done.stderr.splitlines() == [
        "conntrace-run: cannot run no-such-program-anywhere: No such file or directory"
    ]


def test_arguments_after_the_program_are_the_programs():
    # --exporter after the program name, and "--" before it, belong to the program.
    program = ["python", "-c", "import sys; print(sys.argv[1:])", "--exporter", "x"]
    done = conntrace_run(["--exporter", "none", "--", *program])

    assert (done.returncode, done.stdout) == (0, "['--exporter', 'x']\n")
    assert done.stderr == ""


def test_unreadable_variable_warns_once_and_the_program_runs():
    done = conntrace_run(
        ["python", "-c", "print('ran')"],
        env={"CONNTRACE_EXPORT_TIMEOUT": "soon", "OTEL_TRACES_EXPORTER": "none"},
    )

    assert (done.returncode, done.stdout) == (0, "ran\n")
    assert done.stderr.splitlines() == [
        "conntrace: ignoring CONNTRACE_EXPORT_TIMEOUT='soon': expected a number of seconds; "
        "using the default"
    ]


def test_unknown_exporter_in_the_environment_warns_and_falls_back():
    done = conntrace_run(
        ["python", "-c", "from conntrace import sdk; print(sdk.current().config.traces_exporters)"],
        env={"OTEL_TRACES_EXPORTER": "zipkin"},
    )

    assert (done.returncode, done.stdout) == (0, "('otlp',)\n")
    [warning] = done.stderr.splitlines()
    assert warning.startswith("conntrace: ignoring OTEL_TRACES_EXPORTER='zipkin': unknown exporter")
