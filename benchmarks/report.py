"""The issue's targets, checked against one run's results, and the run as Markdown tables.

    /work/venv/bin/python -m benchmarks.report benchmarks/results/full.json

prints the tables that go into the README's Performance section.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import scenarios, truth, variants

# Issue 7's targets.
BOTOCORE_RATIO = 1.05
URLLIB3_RATIO = 1.15
NEW_CONNECTION_ADDED_US = 150.0
STARTUP_SHARE_OF_OTEL = 1 / 3
MEMORY_GROWTH_MB = 2.0
TRUTH_ERROR_MS = 2.0
EXPORT_RATE = 10_000
# The program "stalls" when one span, or one step of the export loop, takes this long.
STALL_MS = 50.0


@dataclass(frozen=True)
class Target:
    what: str
    target: str
    measured: str
    met: bool | None  # None: not measured in this run


def _variant(results: dict[str, Any], scenario: str, variant: str) -> dict[str, Any] | None:
    section = results.get(scenario)
    if section is None:
        return None
    found: dict[str, Any] | None = section["variants"].get(variant)
    return found


def targets(results: dict[str, Any]) -> list[Target]:
    rows: list[Target] = []
    conntrace = _variant(results, scenarios.BOTOCORE, variants.CONNTRACE)
    otel = _variant(results, scenarios.BOTOCORE, variants.OTEL)
    if conntrace is not None and otel is not None:
        rows.append(
            Target(
                "botocore GetItem, reused connection: conntrace vs plain",
                f"≤ {BOTOCORE_RATIO:.2f} x",
                f"{conntrace['ratio']:.2f} x (+{conntrace['added_us']:.0f} µs; CPU "
                f"{conntrace['cpu_ratio']:.2f} x)",
                conntrace["ratio"] <= BOTOCORE_RATIO,
            )
        )
        rows.append(
            Target(
                "botocore GetItem: conntrace's added time vs OpenTelemetry botocore + urllib3",
                "≤ OpenTelemetry's",
                f"+{conntrace['added_us']:.0f} µs vs +{otel['added_us']:.0f} µs (CPU: "
                f"+{conntrace['added_cpu_us']:.0f} µs vs +{otel['added_cpu_us']:.0f} µs)",
                conntrace["added_us"] <= otel["added_us"],
            )
        )
    conntrace = _variant(results, scenarios.URLLIB3, variants.CONNTRACE)
    otel = _variant(results, scenarios.URLLIB3, variants.OTEL)
    if conntrace is not None:
        beside = f"; OpenTelemetry {otel['ratio']:.2f} x" if otel is not None else ""
        rows.append(
            Target(
                "urllib3 GET, reused connection: conntrace vs plain",
                f"≤ {URLLIB3_RATIO:.2f} x",
                f"{conntrace['ratio']:.2f} x (+{conntrace['added_us']:.0f} µs; CPU "
                f"{conntrace['cpu_ratio']:.2f} x){beside}",
                conntrace["ratio"] <= URLLIB3_RATIO,
            )
        )
    conntrace = _variant(results, scenarios.HTTPS_NEW, variants.CONNTRACE)
    if conntrace is not None:
        rows.append(
            Target(
                "new HTTPS connection (DNS + TCP + TLS spans): time conntrace adds",
                f"≤ {NEW_CONNECTION_ADDED_US:.0f} µs",
                f"+{conntrace['added_us']:.0f} µs per connection, its request included "
                f"(CPU: +{conntrace['added_cpu_us']:.0f} µs)",
                conntrace["added_us"] <= NEW_CONNECTION_ADDED_US,
            )
        )
    rows += _startup_targets(results.get("startup"))
    rows += _memory_targets(results.get("memory"))
    rows += _truth_targets(results.get("truth"))
    rows += _export_targets(results.get("export"))
    return rows


def _startup_targets(section: dict[str, Any] | None) -> list[Target]:
    if section is None:
        return []
    what = "start-up, `import boto3`: conntrace-run's added time vs opentelemetry-instrument's"
    if "not_measured" in section:
        return [Target(what, "≤ ⅓", f"not measured: {section['not_measured']}", None)]
    added = section["added_ms"]
    share = section["conntrace_share_of_otel_added"]
    return [
        Target(
            what,
            "≤ ⅓",
            f"+{added[variants.CONNTRACE]:.0f} ms vs +{added[variants.OTEL]:.0f} ms ({share:.2f})",
            share is not None and share <= STARTUP_SHARE_OF_OTEL,
        )
    ]


def _memory_targets(section: dict[str, Any] | None) -> list[Target]:
    if section is None:
        return []
    traced = section[variants.CONNTRACE]
    growth = traced["growth_mb"]
    plain = section[variants.PLAIN]["growth_mb"]
    return [
        Target(
            f"memory: RSS growth over {section['requests']:,} requests, spans exported",
            f"≤ {MEMORY_GROWTH_MB:g} MB",
            f"{growth:+.2f} MB ({traced['block_growth']:+,} memory blocks; untraced: "
            f"{plain:+.2f} MB)",
            growth <= MEMORY_GROWTH_MB,
        )
    ]


def _truth_targets(section: dict[str, Any] | None) -> list[Target]:
    if section is None:
        return []
    rows = []
    for phase in truth.PHASES:
        what = f"truth of timings: {truth.DESCRIPTIONS[phase]}"
        found = section["phases"].get(phase)
        if found is None:
            reason = section.get("not_measured", {}).get(phase, "not measured")
            rows.append(Target(what, f"within {TRUTH_ERROR_MS:g} ms", reason, None))
            continue
        rows.append(
            Target(
                what,
                f"within {TRUTH_ERROR_MS:g} ms",
                f"{found['injected_ms']:g} ms injected: error {found['median_error_ms']:+.2f} "
                f"ms (worst {found['worst_error_ms']:+.2f} ms)",
                abs(found["median_error_ms"]) <= TRUTH_ERROR_MS,
            )
        )
    return rows


def _export_targets(runs: list[dict[str, Any]] | None) -> list[Target]:
    rows = []
    for section in runs or []:
        rate = section["target_spans_per_s"]
        kept_pace = section["achieved_spans_per_s"] >= 0.99 * rate
        stalled = section["worst_stall_ms"] > STALL_MS
        met = section["dropped"] == 0 and kept_pace and not stalled
        slower = "" if rate >= EXPORT_RATE else " (slower than the target: what holds)"
        rows.append(
            Target(
                f"export: {rate:,.0f} spans/s to a local OTLP receiver{slower}",
                f"no drops, no stall (> {STALL_MS:g} ms)",
                f"{section['dropped']:,} of {section['emitted']:,} dropped; "
                f"{section['achieved_spans_per_s']:,.0f} spans/s held; longest stall "
                f"{section['worst_stall_ms']:.0f} ms; {section['behind_at_end_ms']:.0f} ms "
                f"behind at the end; {section['cpu_cores_used']:.2f} cores busy "
                f"({section['cpu_us_per_span']:.0f} µs of CPU per span, made and exported)",
                met if rate >= EXPORT_RATE else None,
            )
        )
    return rows


# --- Markdown ---------------------------------------------------------------------------


def _mark(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


def markdown(results: dict[str, Any]) -> str:
    out = ["| what | target | measured | met |", "|---|---|---|---|"]
    for row in targets(results):
        out.append(f"| {row.what} | {row.target} | {row.measured} | {_mark(row.met)} |")
    for scenario in scenarios.SCENARIOS:
        if scenario in results:
            out += ["", *_operation_table(results[scenario])]
    if "startup" in results and "not_measured" not in results["startup"]:
        out += ["", *_startup_table(results["startup"])]
    if "server" in results:
        server = results["server"]
        out += [
            "",
            f"The benchmark server alone (raw-socket client, one keep-alive connection): "
            f"{server['round_trip_us']:.0f} µs per request and response, median of ten "
            f"parts ({server['requests_per_s']:,.0f} requests/s; fastest part "
            f"{server['fastest_us']:.0f} µs)"
            + (
                f", of which the server's own CPU time {server['server_cpu_us']:.0f} µs."
                if "server_cpu_us" in server  # results written before it was measured
                else "."
            ),
        ]
    out += ["", _machine_line(results)]
    return "\n".join(out)


def _operation_table(section: dict[str, Any]) -> list[str]:
    lines = [
        f"**{section['title']}** ({section['calls_per_round']} calls per round)",
        "",
        "| variant | µs/call (median) | quartiles | x plain | added µs | CPU µs/call "
        "| added CPU µs | of it GC µs | spans/call | function calls/call |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, found in section["variants"].items():
        lines.append(
            f"| {variants.NAMES[name]} | {found['median_us']:.1f} | "
            f"{found['q1_us']:.0f}-{found['q3_us']:.0f} | {found['ratio']:.2f} | "
            f"{found['added_us']:+.1f} | {found['cpu_us']:.1f} | {found['added_cpu_us']:+.1f} | "
            f"{found['gc_us']:.1f} | {found['spans_per_call']:.2f} | "
            f"{found['function_calls']:.0f} |"
        )
    return lines


def _startup_table(section: dict[str, Any]) -> list[str]:
    lines = [
        f'**Start-up, `python -c "{section["program"]}"`**',
        "",
        "| launcher | median ms | added ms | modules it adds (own import time, ms) |",
        "|---|---|---|---|",
    ]
    extra = section.get("extra_imports_ms", {})
    for name, median in section["median_ms"].items():
        imports = extra.get(name, {})
        listed = ", ".join(f"{package} {ms:g}" for package, ms in imports.items())
        lines.append(
            f"| {variants.NAMES[name]} | {median:.0f} | {section['added_ms'][name]:+.0f} | "
            f"{listed or '-'} |"
        )
    return lines


def _machine_line(results: dict[str, Any]) -> str:
    found = results["machine"]
    packages = found["packages"]
    load = found["load_average_at_start"][0]
    end = found.get("load_average_at_end", [load])[0]
    return (
        f"Machine: {found['cpus']} CPUs ({found['cpu_model']}, {float(found['cpu_mhz']):.0f} MHz"
        f"{', virtual machine' if found['virtual_machine'] else ''}), {found['system']}, "
        f"{found['implementation']} {found['python']}; botocore {packages.get('botocore')}, "
        f"urllib3 {packages.get('urllib3')}, opentelemetry-sdk "
        f"{packages.get('opentelemetry-sdk')}, instrumentations "
        f"{packages.get('opentelemetry-instrumentation-botocore')}, wrapt "
        f"{packages.get('wrapt')}. Load average {load:.1f} at the start, {end:.1f} at the end "
        f"(the machine was shared). Profile `{results['profile']}`, run at {results['started']}"
        f"{_source(results.get('conntrace_source'))}."
    )


def _source(found: dict[str, Any] | None) -> str:
    if not found or not found["commit"]:
        return ""
    changed = len(found["changed"])
    return f", conntrace at {found['commit']}" + (
        f" with {changed} changed file(s) in src/conntrace" if changed else ""
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="print a benchmark run as Markdown")
    parser.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    print(markdown(json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
