"""The benchmark suite runs end to end in its tiny configuration, and measures what it says.

No figure of speed is checked here (the suite checks its targets itself): only that
every part ran, traced what it claims to trace, and wrote its results.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report, variants

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    output = tmp_path_factory.mktemp("benchmarks") / "tiny.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--tiny", "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(output.read_text()), done.stdout


def test_every_section_is_in_the_results(tiny_run: tuple[dict[str, Any], str]) -> None:
    results, _ = tiny_run
    for section in ("machine", "server", "botocore", "urllib3", "https_new", "startup",
                    "memory", "truth", "export", "targets"):  # fmt: skip
        assert section in results, section
    assert results["machine"]["cpus"] >= 1
    assert results["machine"]["python"] == ".".join(map(str, sys.version_info[:3]))


def test_each_variant_traces_what_it_claims(tiny_run: tuple[dict[str, Any], str]) -> None:
    results, _ = tiny_run
    botocore = results["botocore"]["variants"]
    assert set(botocore) == set(variants.VARIANTS)
    assert botocore[variants.PLAIN]["spans_per_call"] == 0
    # An API span and an HTTP span per call, through the batch processor to the counting
    # exporter, or over OTLP to the receiver process; one API span for OpenTelemetry's
    # botocore instrumentation, which suppresses its urllib3 span beneath.
    assert botocore[variants.CONNTRACE]["spans_per_call"] == 2
    assert botocore[variants.OTLP]["spans_per_call"] == 2
    assert botocore[variants.OTEL]["spans_per_call"] == 1
    # Diagnosis only: no exporter at all.
    assert botocore[variants.DIAGNOSIS]["spans_per_call"] is None
    urllib3 = results["urllib3"]["variants"]
    assert urllib3[variants.PLAIN]["spans_per_call"] == 0
    assert urllib3[variants.CONNTRACE]["spans_per_call"] == 1
    assert urllib3[variants.OTEL]["spans_per_call"] == 1
    # Every call opens a connection to 127.0.0.1: request, setup, TCP and TLS spans (an IP
    # address is not looked up, so no DNS span).
    assert results["https_new"]["variants"][variants.CONNTRACE]["spans_per_call"] == 4


def test_conntrace_runs_as_the_launcher_sets_it_up(tiny_run: tuple[dict[str, Any], str]) -> None:
    """Every conntrace variant wrote its report at exit, and the report counts every
    request the worker made: findings are on, with or without spans."""
    results, _ = tiny_run
    for scenario in ("botocore", "urllib3", "https_new"):
        for name, found in results[scenario]["variants"].items():
            if name not in variants.CONNTRACE_VARIANTS:
                assert "report_totals" not in found
                continue
            assert found["report_totals"] is not None, (scenario, name)
            assert found["report_requests"] == found["requests_made"], (scenario, name)
    memory = results["memory"]
    assert memory[variants.OTLP]["report_totals"]["requests"] == (
        memory["requests"] + memory["warmup"]
    )


def test_function_calls_are_counted_in_every_thread(tiny_run: tuple[dict[str, Any], str]) -> None:
    results, _ = tiny_run
    botocore = results["botocore"]["variants"]
    for found in botocore.values():
        assert found["function_calls"] == pytest.approx(
            found["function_calls_main_thread"] + found["function_calls_other_threads"]
        )
        assert found["function_calls_main_thread"] > 1000
    # Encoding spans for OTLP happens in the export thread (or in the flush), and is counted.
    assert (
        botocore[variants.OTLP]["function_calls"] > botocore[variants.CONNTRACE]["function_calls"]
    )
    for found in botocore.values():
        assert found["whole_cpu_us"] > 0


def test_each_round_is_recorded(tiny_run: tuple[dict[str, Any], str]) -> None:
    results, _ = tiny_run
    rounds = results["settings"]["rounds"]
    for scenario in ("botocore", "urllib3", "https_new"):
        for found in results[scenario]["variants"].values():
            assert len(found["rounds_us"]) == rounds
            assert found["q1_us"] <= found["median_us"] <= found["q3_us"]
        assert results[scenario]["variants"][variants.PLAIN]["ratio"] == 1.0


def test_startup_commands_run_traced_as_claimed(tiny_run: tuple[dict[str, Any], str]) -> None:
    results, _ = tiny_run
    startup = results["startup"]
    checked = startup["checked"]
    assert {name: found["ok"] for name, found in checked.items()} == {
        variants.PLAIN: True,
        variants.CONNTRACE: True,
        variants.OTEL: True,
    }, checked
    # The program's one call reached the receiver as spans (none from the plain run).
    assert checked[variants.PLAIN]["spans_received"] == 0
    assert checked[variants.CONNTRACE]["spans_received"] >= 2
    assert checked[variants.OTEL]["spans_received"] >= 1
    assert checked[variants.CONNTRACE]["report_requests"] == 1
    assert "conntrace" in startup["extra_imports_ms"][variants.CONNTRACE]


def test_memory_and_export_spans_reach_the_receiver(tiny_run: tuple[dict[str, Any], str]) -> None:
    results, _ = tiny_run
    memory = results["memory"]
    traced_calls = memory["requests"] + memory["warmup"]
    assert memory[variants.OTLP]["spans_received"] >= traced_calls
    assert memory[variants.PLAIN]["spans_received"] == 0
    (export,) = results["export"]
    # The tiny pace never fills the batch processor's queue (2,048 spans).
    assert export["emitted"] < 2048
    assert export["received"] == export["emitted"]
    assert export["dropped"] == 0


def test_the_printed_table_has_a_row_per_target(tiny_run: tuple[dict[str, Any], str]) -> None:
    results, printed = tiny_run
    rows = results["targets"]
    assert len(rows) == len(report.targets(results)) >= 12
    for row in rows:
        assert f"| {row['what']} | {row['target']} |" in printed
