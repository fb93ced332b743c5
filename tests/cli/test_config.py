"""Reading the settings from the environment: OpenTelemetry's variables, conntrace's, Lambda's."""

from __future__ import annotations

import logging

import pytest

from conntrace.config import Config, load_config, program_name

ARGV = ["/usr/bin/python3", "app.py"]


def test_a_child_keeps_its_parents_service_name_and_its_own_program():
    config = load_config({"OTEL_SERVICE_NAME": "parent"}, ["/usr/bin/python3", "child.py"])

    assert (config.service_name, config.program) == ("parent", "child")


def test_defaults():
    config = load_config({}, ARGV)

    assert config == Config(service_name="app")
    assert config.program == "app"
    assert (config.otlp_traces, config.console_view, config.otlp_metrics) == (True, False, False)
    assert config.traces_endpoint == "http://localhost:4317"


def test_opentelemetry_variables():
    config = load_config(
        {
            "OTEL_SERVICE_NAME": "orders",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, team=a%2Cb",
            "OTEL_TRACES_EXPORTER": "otlp,console",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        },
        ARGV,
    )

    assert config.service_name == "orders"
    assert config.resource_attributes == (("deployment.environment", "prod"), ("team", "a,b"))
    assert config.traces_exporters == ("otlp", "console")
    assert (config.otlp_traces, config.console_view, config.otlp_metrics) == (True, True, True)
    assert config.traces_endpoint == "http://collector:4318/v1/traces"
    assert config.metrics_endpoint == "http://collector:4318/v1/metrics"
    assert (config.sampler, config.sampler_arg) == ("parentbased_traceidratio", 0.25)


def test_traces_endpoint_variable_is_used_as_it_is():
    config = load_config(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example:443/custom",
        },
        ARGV,
    )

    assert config.traces_endpoint == "https://traces.example:443/custom"


def test_conntrace_variables():
    config = load_config(
        {"CONNTRACE_CONSOLE": "yes", "CONNTRACE_EXPORT_TIMEOUT": "0.5", "CONNTRACE_COLOR": "never"},
        ARGV,
    )

    assert (config.console, config.export_timeout, config.color) == (True, 0.5, "never")
    assert config.otlp_traces and config.console_view


def test_none_exports_nothing():
    config = load_config({"OTEL_TRACES_EXPORTER": "none"}, ARGV)

    assert config.traces_exporters == ()
    assert not config.otlp_traces and not config.console_view


def test_in_lambda_the_function_names_the_service_and_otlp_goes_over_http():
    config = load_config({"AWS_LAMBDA_FUNCTION_NAME": "orders-handler"}, ["/var/lang/bin/python3"])

    assert config.service_name == "orders-handler"
    assert (config.otlp_traces, config.otlp_protocol) == (True, "http/protobuf")
    assert config.traces_endpoint == "http://localhost:4318/v1/traces"


def test_in_lambda_explicit_settings_still_win():
    config = load_config(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "orders-handler",
            "OTEL_SERVICE_NAME": "orders",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        },
        ARGV,
    )

    assert (config.service_name, config.otlp_protocol) == ("orders", "grpc")


def test_no_color_turns_auto_colours_off_but_not_always():
    assert load_config({"NO_COLOR": "1"}, ARGV).color == "never"
    assert load_config({"NO_COLOR": "1", "CONNTRACE_COLOR": "always"}, ARGV).color == "always"


def test_empty_variables_count_as_unset():
    assert load_config({"OTEL_TRACES_EXPORTER": "", "OTEL_SERVICE_NAME": " "}, ARGV) == Config(
        "app"
    )


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "unknown exporter 'zipkin'"),
        ("OTEL_METRICS_EXPORTER", "prometheus", "unknown exporter 'prometheus'"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "expected one of grpc, http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317", "expected a URL"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:port", "expected a URL"),
        ("OTEL_TRACES_SAMPLER", "xray", "expected one of"),
        ("OTEL_TRACES_SAMPLER_ARG", "2", "expected a number from 0 to 1"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team", "expected key=value pairs"),
        ("OTEL_SDK_DISABLED", "maybe", "expected true or false"),
        ("CONNTRACE_CONSOLE", "sometimes", "expected true or false"),
        ("CONNTRACE_EXPORT_TIMEOUT", "-1", "expected a number of seconds above 0"),
        ("CONNTRACE_EXPORT_TIMEOUT", "nan", "expected a number of seconds above 0"),
        ("CONNTRACE_COLOR", "rainbow", "expected one of auto, always, never"),
    ],
)
def test_unreadable_value_warns_once_and_the_default_is_used(caplog, name, value, reason):
    with caplog.at_level(logging.WARNING, logger="conntrace"):
        config = load_config({name: value}, ARGV)

    assert config == Config("app")
    [record] = caplog.records
    assert record.getMessage().startswith(f"conntrace: ignoring {name}={value!r}: {reason}")


def test_each_unreadable_value_gets_its_own_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="conntrace"):
        load_config({"CONNTRACE_COLOR": "rainbow", "OTEL_TRACES_SAMPLER": "xray"}, ARGV)

    assert len(caplog.records) == 2


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["python", "app.py", "--flag"], "app"),
        (["/usr/bin/python3.11", "-u", "-W", "ignore", "/srv/worker.py"], "worker"),
        (["python3", "-m", "package.worker", "--flag"], "package.worker"),
        (["python", "-mpackage"], "package"),
        (["python", "-c", "pass"], "python"),
        (["python"], "python"),
        (["/venv/bin/python", "/venv/bin/aws", "s3", "ls"], "aws"),
        (["aws", "s3", "ls"], "aws"),
        (["./tool.py", "x"], "tool"),
        ([], "python"),
    ],
)
def test_program_name(command, name):
    assert program_name(command) == name
