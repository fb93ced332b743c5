"""Hostile configuration: never a traceback, always a clear message and a working program."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conntrace import cli
from conntrace.config import SETTINGS, Config, load_config

VARIABLES = [setting.env for setting in SETTINGS] + [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "AWS_LAMBDA_FUNCTION_NAME",
    "NO_COLOR",
]
# Environment values cannot hold NUL; anything else goes, surrogates excluded (os.environ
# cannot encode them either).
values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
hostile_values = st.one_of(
    values,
    st.sampled_from(["", " ", "1e400", "-1", "nan", "inf", "0x10", "true\n", "grpc,,", "%ZZ"]),
)
environments = st.dictionaries(st.sampled_from(VARIABLES), hostile_values, max_size=len(VARIABLES))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(environ=environments)
def test_any_environment_gives_a_config_and_one_line_warnings(environ, caplog):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="conntrace"):
        config = load_config(environ, argv=["python", "app.py"])
    assert isinstance(config, Config)
    assert config.export_timeout >= 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "conntrace"]
    assert all("\n" not in message for message in warnings)
    assert len(warnings) <= len(environ)


flags = st.sampled_from([setting.flag for setting in SETTINGS] + ["--bogus", "-x", "--", "--help="])
arguments = st.lists(st.one_of(flags, values.filter(lambda text: not text.startswith("-"))))


@settings(max_examples=300)
@given(argv=arguments)
def test_any_command_line_parses_or_says_why_in_one_line(argv):
    try:
        cli.parse(argv)
    except cli.UsageError as error:
        message = str(error)
        assert message and "\n" not in message


@settings(max_examples=12, deadline=None)
@given(environ=environments)
def test_the_program_runs_whatever_the_environment(environ):
    env = {**os.environ, **environ, "OTEL_TRACES_EXPORTER": "none"}
    env.pop("PYTHONPATH", None)
    # The report is written where CONNTRACE_REPORT says: keep made-up paths inside a
    # scratch folder rather than anywhere on this machine.
    if "CONNTRACE_REPORT" in env:
        env["CONNTRACE_REPORT"] = env["CONNTRACE_REPORT"].lstrip("/").replace("..", "__")
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            [cli_path(), sys.executable, "-c", "print('program ran')"],
            env=env,
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "program ran\n"
    assert "Traceback" not in done.stderr
    assert all(line.startswith("conntrace") for line in done.stderr.splitlines())


def cli_path() -> str:
    return os.path.join(os.path.dirname(sys.executable), "conntrace-run")
