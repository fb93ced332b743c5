"""collector/config.yaml: what the OpenTelemetry Collector would refuse, or silently get wrong.

The collector itself is not available here (no Docker engine, no binary from a package
registry), so this checks its rules in Python: every component a pipeline names is
defined and every defined one is used; memory_limiter comes first and has a limit;
receivers listen where docker-compose.yml publishes; traces reach Jaeger over OTLP and
metrics a Prometheus endpoint.
"""

from __future__ import annotations

from typing import Any

from .test_compose import published

KINDS = ("receivers", "processors", "exporters")
# Component types of otelcol-contrib used here (since 0.144 the OTLP gRPC exporter is
# ``otlp_grpc``; ``otlp`` is its deprecated alias).
KNOWN_TYPES = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch"},
    "exporters": {"otlp_grpc", "otlp_http", "prometheus", "debug"},
    "extensions": {"health_check"},
}


def component_type(component_id: str) -> str:
    """``type[/name]`` is how the collector names a component instance."""
    return component_id.split("/", 1)[0]


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def host_of(endpoint: str) -> str:
    return endpoint.split("://", 1)[-1].rsplit(":", 1)[0]


def pipelines(collector: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return collector["service"]["pipelines"]


def test_every_component_is_known_and_defined_where_it_is_used(collector):
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for name, pipeline in pipelines(collector).items():
        assert component_type(name) in ("traces", "metrics", "logs"), name
        assert pipeline.get("receivers") and pipeline.get("exporters"), name
        for kind in KINDS:
            for component in pipeline.get(kind, []):
                assert component in (collector.get(kind) or {}), f"{name}: {component} undefined"
                used[kind].add(component)
    for kind in KINDS:
        defined = set(collector.get(kind) or {})
        assert defined == used[kind], f"{kind} defined but in no pipeline: {defined - used[kind]}"
        assert {component_type(c) for c in defined} <= KNOWN_TYPES[kind]
    extensions = set(collector.get("extensions") or {})
    assert set(collector["service"].get("extensions", [])) == extensions
    assert {component_type(c) for c in extensions} <= KNOWN_TYPES["extensions"]


def test_memory_limiter_comes_first_and_batch_follows(collector):
    for name, pipeline in pipelines(collector).items():
        kinds = [component_type(p) for p in pipeline.get("processors", [])]
        assert kinds[:1] == ["memory_limiter"], f"{name}: memory_limiter must be first"
        assert "batch" in kinds, f"{name}: no batch processor"
    for component_id, settings in collector["processors"].items():
        if component_type(component_id) == "memory_limiter":
            # The collector refuses a memory_limiter without a limit.
            assert settings.get("check_interval")
            assert settings.get("limit_mib") or settings.get("limit_percentage")


def test_otlp_receiver_takes_grpc_on_4317_and_http_on_4318(collector):
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert port_of(protocols["grpc"]["endpoint"]) == 4317
    assert port_of(protocols["http"]["endpoint"]) == 4318


def listening_endpoints(collector: dict[str, Any]) -> dict[str, str]:
    """Every address the collector listens on, by where it is configured."""
    found = {}
    for protocol, settings in collector["receivers"]["otlp"]["protocols"].items():
        found[f"receivers.otlp.{protocol}"] = settings["endpoint"]
    for kind in ("exporters", "extensions"):
        for component_id, settings in (collector.get(kind) or {}).items():
            if component_type(component_id) in ("prometheus", "health_check"):
                found[f"{kind}.{component_id}"] = settings["endpoint"]
    return found


def test_listening_ports_are_reachable_through_localhost_publishing(collector, compose):
    published_ports = {
        target: host_ip for host_ip, _, target in published(compose["services"]["otel-collector"])
    }
    for where, endpoint in listening_endpoints(collector).items():
        # The collector's default is localhost, which inside a container no published
        # port can reach: the container side must listen on all its interfaces.
        assert host_of(endpoint) in ("0.0.0.0", "[::]", ""), f"{where}: {endpoint}"
        port = port_of(endpoint)
        assert port in published_ports, f"{where}: port {port} is not published"
        assert published_ports[port] in ("127.0.0.1", "::1"), f"{where}: not localhost-only"


def _exporters_of(collector: dict[str, Any], signal: str) -> list[str]:
    return [
        exporter
        for name, pipeline in pipelines(collector).items()
        if component_type(name) == signal
        for exporter in pipeline["exporters"]
    ]


def test_traces_go_to_jaeger_over_otlp(collector, compose):
    [exporter] = _exporters_of(collector, "traces")
    assert component_type(exporter) == "otlp_grpc"
    settings = collector["exporters"][exporter]
    service = host_of(settings["endpoint"])
    assert service in compose["services"], f"{service} is not a compose service"
    assert "jaeger" in compose["services"][service]["image"]
    assert port_of(settings["endpoint"]) == 4317
    # Jaeger's OTLP port inside the compose network has no TLS.
    assert settings["tls"]["insecure"] is True


def test_metrics_reach_a_prometheus_endpoint(collector):
    exporters = _exporters_of(collector, "metrics")
    assert "prometheus" in {component_type(e) for e in exporters}
