"""The deployment files as their tools read them: docker-compose's view, the collector's YAML."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COLLECTOR_CONFIG = ROOT / "collector" / "config.yaml"


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """``docker-compose config``: the file validated against the Compose schema and resolved."""
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is not installed: apt-get install docker-compose"
    done = subprocess.run(
        [tool, "--file", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"docker-compose config rejected the file:\n{done.stderr}"
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="session")
def collector() -> dict[str, Any]:
    return yaml.safe_load(COLLECTOR_CONFIG.read_text())
