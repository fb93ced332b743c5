"""The same hook on an older runtime interface client, as the Python 3.9 runtime has.

awslambdaric 2.x, like the self-contained bootstrap of Lambda's Python 3.9 runtime, defines
the client's methods on ``LambdaRuntimeClient`` itself rather than on a base class. It is
installed from PyPI for this test and put first on the function's PYTHONPATH.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conntrace import attributes as A


@pytest.fixture(scope="module")
def older_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("awslambdaric2")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--target", str(target), "awslambdaric>=2,<3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def test_invocations_are_traced_under_awslambdaric_2(older_client, start_function, receiver):
    def received_span_ids(_invocation):
        return {span.span_id for span in receiver.spans()}

    function = start_function(
        "app.where", receiver, on_outcome=received_span_ids, PYTHONPATH=str(older_client)
    )
    first, second = function.invoke(), function.invoke()

    assert first.outcome.json()["awslambdaric"].startswith(str(older_client))
    cold, warm = function.trace(first), function.trace(second)
    assert cold.server.attributes[A.FAAS_COLDSTART] is True
    assert warm.server.attributes[A.FAAS_COLDSTART] is False
    assert [span.name for span in warm.children(warm.server)] == ["DynamoDB.GetItem"]
    for invocation, trace in ((first, cold), (second, warm)):
        assert {span.span_id for span in trace.spans} <= invocation.seen_at_outcome
