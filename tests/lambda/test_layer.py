"""The layer zip as ``lambda/build_layer.py`` builds it, for this machine's CPU.

It is built for Python 3.9 and this machine's Python, so that this Python gets the versions
the full layer ships to every runtime (the oldest runtime's, where they fit). Building
fetches wheels from PyPI for Lambda's platform. The zip is unpacked where /opt would be,
and a function runs from it under the real runtime interface client.
"""

from __future__ import annotations

import platform
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conntrace import attributes as A

from .conftest import REPO, WRAPPER

VERSION = "{}.{}".format(*sys.version_info[:2])
ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}[platform.machine()]


@pytest.fixture(scope="module")
def layer_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, str(REPO / "lambda" / "build_layer.py")]
    command += ["--arch", ARCH, "--python", "3.9", "--python", VERSION, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / f"conntrace-layer-{ARCH}.zip"


@pytest.fixture(scope="module")
def opt(layer_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(layer_zip) as archive:
        for info in archive.infolist():
            archive.extract(info, root)
            # zipfile drops permissions on extraction; Lambda keeps them.
            (root / info.filename).chmod(info.external_attr >> 16 & 0o777)
    return root


def test_the_zip_holds_the_wrapper_at_its_root_and_conntrace_under_python(layer_zip):
    with zipfile.ZipFile(layer_zip) as archive:
        names = set(archive.namelist())
        wrapper = archive.getinfo(WRAPPER.name)

    assert stat.S_IMODE(wrapper.external_attr >> 16) == 0o755
    assert "python/conntrace/bootstrap/sitecustomize.py" in names
    assert "python/conntrace/layers/awslambda.py" in names
    assert any(name.startswith("python/opentelemetry/exporter/otlp/proto/http/") for name in names)
    # Compiled for this Python, so the runtime need not compile at each cold start.
    tag = sys.implementation.cache_tag
    assert f"python/conntrace/__pycache__/__init__.{tag}.pyc" in names
    tops = {name.split("/")[1] for name in names if name.startswith("python/")}
    versioned = f"python/lib/python{VERSION}/site-packages/"
    tops |= {name[len(versioned) :].split("/")[0] for name in names if name.startswith(versioned)}
    # Compiled extensions differ per Python: each runtime has its own wrapt.
    assert any(name.startswith(f"{versioned}wrapt/_wrappers.") for name in names)
    # The runtime's own SDK is the one traced; gRPC is not the Lambda default.
    for left_out in ("boto3", "botocore", "urllib3", "s3transfer", "grpc"):
        assert left_out not in tops
    assert {"conntrace", "opentelemetry", "wrapt", "requests", "google"} <= tops


def test_a_function_runs_traced_from_the_unpacked_layer(opt, start_function, receiver):
    def received_span_ids(_invocation):
        return {span.span_id for span in receiver.spans()}

    function = start_function("app.where", receiver, layer=opt, on_outcome=received_span_ids)
    invocation = function.invoke()

    seen = invocation.outcome.json()
    assert seen["pid"] == function.process.pid
    assert seen["instrumented"] is True
    assert seen["found"] is True
    # conntrace and OpenTelemetry from the layer, not from this test environment.
    assert seen["conntrace"].startswith(f"{opt}/python/")
    assert seen["opentelemetry_sdk"].startswith(f"{opt}/python/")
    trace = function.trace(invocation)
    assert trace.server.attributes[A.FAAS_COLDSTART] is True
    [attempt] = trace.attempts
    assert attempt.attributes[A.CONNECTION_REASON] == A.REASON_FIRST
    # Flushed before the response, with the OpenTelemetry versions the layer ships.
    assert {span.span_id for span in trace.spans} <= invocation.seen_at_outcome
