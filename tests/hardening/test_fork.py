"""Forked children trace and export, and inherit no lock held by another thread."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conntrace import attributes as A

_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, os, signal, sys, threading
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    import conntrace

    OUT = sys.argv[1]
    URL = sys.argv[2]

    class FileExporter(SpanExporter):
        def export(self, spans):
            with open(OUT, "a") as out:
                for span in spans:
                    out.write(json.dumps({"pid": os.getpid(), "name": span.name,
                                          "attributes": dict(span.attributes)}) + "\\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(FileExporter(), schedule_delay_millis=50))
    conntrace.instrument(tracer_provider=provider)
    import urllib3
    from conntrace import ledger

    http = urllib3.PoolManager()
    http.request("GET", URL)

    def child_work():
        signal.alarm(20)  # a deadlock fails the test instead of hanging it
        urllib3.PoolManager().request("GET", URL)  # a new pool takes conntrace's lock
        http.request("GET", URL)
        provider.force_flush()

    # A thread holds conntrace's lock while the process forks.
    held = threading.Event()
    release = threading.Event()
    def hold():
        with ledger._lock:
            held.set()
            release.wait()
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        child_work()
        os._exit(0)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status

    context = multiprocessing.get_context("fork")
    worker = context.Process(target=child_work)
    worker.start()
    worker.join(30)
    assert worker.exitcode == 0, worker.exitcode
    provider.force_flush()
    print(json.dumps({"parent": os.getpid()}))
    """
)


def test_forked_children_trace_and_export(tmp_path, server):
    local = server()
    script = tmp_path / "fork.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "spans.jsonl"
    done = subprocess.run(
        [sys.executable, str(script), str(out), local.url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    parent = json.loads(done.stdout)["parent"]
    spans = [json.loads(line) for line in out.read_text().splitlines()]
    attempts = [s for s in spans if s["name"] == "GET"]
    children = {s["pid"] for s in attempts} - {parent}
    assert len(children) == 2  # os.fork and multiprocessing's fork
    for child in children:
        mine = [s["attributes"] for s in attempts if s["pid"] == child]
        assert len(mine) == 2
        assert {a[A.CONNECTION_REASON] for a in mine if not a[A.CONNECTION_REUSED]} >= {
            A.REASON_NEW_POOL
        }
    assert len(local.requests) == 5
