"""docker-compose.yml, as ``docker-compose config`` resolves it: valid, pinned, local-only."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import COLLECTOR_CONFIG

# name:1.2.3, optionally with a digest; or a bare digest. Never a moving tag.
_PINNED = re.compile(r"^[\w.\-/]+(:\d+\.\d+\.\d+)?(@sha256:[0-9a-f]{64})?$")
_LOCAL = ("127.0.0.1", "::1")


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) for each published port, in either syntax."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):  # long syntax, as Compose v2 prints it
            host_ip = port.get("host_ip", "")
            found.append((host_ip, int(port.get("published", 0)), int(port["target"])))
            continue
        spec = str(port).split("/", 1)[0]
        # "[ip:]host:container"; an IPv6 address comes in brackets.
        match = re.fullmatch(r"(?:\[?([0-9a-fA-F:.]*)\]?:)?(\d*):(\d+)", spec)
        assert match, f"cannot read port mapping {port!r}"
        host_ip, host_port, target = match.groups()
        found.append((host_ip or "", int(host_port or 0), int(target)))
    return found


def test_both_services_are_defined(compose):
    assert {"jaeger", "otel-collector"} <= set(compose["services"])


@pytest.mark.parametrize("service", ["jaeger", "otel-collector"])
def test_images_are_pinned_to_exact_versions(compose, service):
    image = compose["services"][service]["image"]
    assert _PINNED.match(image), f"{service}: {image} is not pinned to an exact version"
    assert ":" in image.split("/")[-1] or "@sha256:" in image, f"{service}: {image} has no tag"
    assert not image.split("@")[0].endswith(":latest")


def test_every_published_port_is_bound_to_localhost(compose):
    for name, service in compose["services"].items():
        assert service.get("network_mode") != "host", f"{name} would share the host's network"
        for host_ip, host_port, target in published(service):
            assert host_ip in _LOCAL, f"{name}: port {target} is published on {host_ip or 'all'}"
            assert host_port == target, f"{name}: {target} should keep its well-known port"


def test_jaeger_ui_and_otlp_ports_are_published(compose):
    services = compose["services"]
    assert 16686 in {target for *_, target in published(services["jaeger"])}
    assert {4317, 4318} <= {target for *_, target in published(services["otel-collector"])}


def test_collector_runs_with_the_repositorys_config(compose):
    collector = compose["services"]["otel-collector"]
    mounts = [_volume(volume) for volume in collector["volumes"]]
    [(target, read_only)] = [
        (target, read_only)
        for source, target, read_only in mounts
        if source.endswith("collector/config.yaml")
    ]
    assert read_only
    command = collector["command"]
    command = command if isinstance(command, list) else command.split()
    assert f"--config={target}" in command or ["--config", target] in _pairs(command)
    assert COLLECTOR_CONFIG.is_file()
    assert collector["depends_on"] and "jaeger" in collector["depends_on"]


def _volume(volume: Any) -> tuple[str, str, bool]:
    if isinstance(volume, dict):
        return str(volume["source"]), str(volume["target"]), bool(volume.get("read_only"))
    source, target, *mode = str(volume).split(":")
    return source, target, "ro" in mode


def _pairs(command: list[str]) -> list[list[str]]:
    return [command[i : i + 2] for i in range(len(command) - 1)]
