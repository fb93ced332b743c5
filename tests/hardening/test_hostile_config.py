"""Hostile configuration: never a traceback, always a clear message and a working program."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from urllib.parse import quote, unquote_plus

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conntrace import _redact, cli
from conntrace._redact import _SENSITIVE_QUERY_KEYS, REDACTED, full_url
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
    # The report and the timeline are written where their variables say: keep made-up paths
    # inside a scratch folder rather than anywhere on this machine.
    for name in ("CONNTRACE_REPORT", "CONNTRACE_HTML"):
        if name in env:
            env[name] = env[name].lstrip("/").replace("..", "__")
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


# --- the query keys whose values url.full keeps ------------------------------------------

query_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=hostile_values)
def test_any_keep_query_values_setting_gives_keys_or_one_line_warning(text, caplog):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="conntrace"):
        config = load_config({"CONNTRACE_KEEP_QUERY_VALUES": text}, argv=["python", "app.py"])
    warnings = [r.getMessage() for r in caplog.records if r.name == "conntrace"]
    assert len(warnings) <= 1
    assert all("\n" not in message for message in warnings)
    if warnings:
        assert config.keep_query_values == ()
    # Whatever was kept can be compared with a decoded, lower-case key.
    assert all(key == key.lower() and key for key in config.keep_query_values)


@settings(max_examples=500)
@given(
    pairs=st.lists(st.tuples(query_text, query_text), max_size=6),
    keep=st.lists(st.sampled_from(["page", "limit", "signature", "token", ""]), max_size=3),
)
def test_no_query_value_survives_unless_its_key_is_kept(pairs, keep):
    keys = [quote(key, safe="") for key, _ in pairs]
    values = [quote(value, safe="") for _, value in pairs]
    query = "&".join(f"{key}={value}" for key, value in zip(keys, values))
    kept = frozenset(key for key in keep if key)
    before = _redact.keep_query_values
    _redact.keep_query_values = kept
    try:
        url = full_url("https", "::1", 443, f"/p?{query}")
    finally:
        _redact.keep_query_values = before

    assert url.startswith("https://[::1]:443/p?")
    shown = url.partition("?")[2].split("&") if pairs else []
    assert len(shown) == len(pairs)
    for key, value, item in zip(keys, values, shown):
        name = unquote_plus(key).lower()
        if name in kept and name not in _SENSITIVE_QUERY_KEYS:
            assert item == f"{key}={value}"
        else:
            # The key stays readable; the value is gone.
            assert item == f"{key}={REDACTED}"


@settings(max_examples=12, deadline=None)
@given(keys=hostile_values)
def test_any_keep_query_values_flag_is_taken_or_refused_in_one_line(keys):
    done = subprocess.run(
        [cli_path(), "--keep-query-values", keys, "--exporter", "none", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode == 2:
        [line] = done.stderr.splitlines()
        assert line.startswith("conntrace-run: --keep-query-values")
    else:
        assert (done.returncode, done.stderr) == (0, "")
