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

# Issue 11's targets.
BOTOCORE_RATIO = 1.05
# conntrace's added time on a botocore call, as a share of OpenTelemetry's (botocore +
# urllib3 instrumentations) in the same run.
BOTOCORE_SHARE_OF_OTEL = 0.5
DIAGNOSIS_RATIO = 1.03
URLLIB3_RATIO = 1.15
NEW_CONNECTION_ADDED_US = 150.0
# The whole cost, export over OTLP included: CPU of the program's process, every thread.
WHOLE_CPU_RATIO = 1.10
STARTUP_SHARE_OF_OTEL = 1 / 4
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


def _calls(found: dict[str, Any], plain: dict[str, Any] | None) -> str:
    """Function calls per call, and what they add to the untraced worker's."""
    calls = found.get("function_calls")
    if calls is None:
        return ""
    if plain is None or plain.get("function_calls") is None:
        return f"; {calls:,.0f} function calls"
    return f"; {calls - plain['function_calls']:+,.0f} function calls"


def _ratio_row(
    what: str, limit: float, found: dict[str, Any], plain: dict[str, Any] | None, extra: str = ""
) -> Target:
    return Target(
        what,
        f"≤ {limit:.2f} x",
        f"{found['ratio']:.2f} x ({found['added_us']:+.0f} µs; CPU {found['cpu_ratio']:.2f} x"
        f"{_calls(found, plain)}){extra}",
        found["ratio"] <= limit,
    )


def targets(results: dict[str, Any]) -> list[Target]:
    rows: list[Target] = []
    plain = _variant(results, scenarios.BOTOCORE, variants.PLAIN)
    conntrace = _variant(results, scenarios.BOTOCORE, variants.CONNTRACE)
    otel = _variant(results, scenarios.BOTOCORE, variants.OTEL)
    if conntrace is not None:
        rows.append(
            _ratio_row(
                "botocore GetItem, reused connection, spans on (2 spans, batch processor, "
                "null exporter): conntrace vs plain",
                BOTOCORE_RATIO,
                conntrace,
                plain,
            )
        )
    if conntrace is not None and otel is not None:
        share = conntrace["added_us"] / otel["added_us"] if otel["added_us"] > 0 else None
        shown = "n/a" if share is None else f"{share:.2f}"
        cpu = (
            f"{conntrace['added_cpu_us'] / otel['added_cpu_us']:.2f}"
            if otel["added_cpu_us"] > 0
            else "n/a"
        )
        rows.append(
            Target(
                "botocore GetItem: conntrace's added time vs OpenTelemetry botocore + urllib3",
                f"≤ {BOTOCORE_SHARE_OF_OTEL:g} x OpenTelemetry's",
                f"{conntrace['added_us']:+.0f} µs vs {otel['added_us']:+.0f} µs ({shown}; CPU: "
                f"{conntrace['added_cpu_us']:+.0f} µs vs {otel['added_cpu_us']:+.0f} µs, {cpu}"
                f"{_calls(conntrace, plain)} vs{_calls(otel, plain)[1:]})",
                share is not None and share <= BOTOCORE_SHARE_OF_OTEL,
            )
        )
    diagnosis = _variant(results, scenarios.BOTOCORE, variants.DIAGNOSIS)
    if diagnosis is not None:
        row = _ratio_row(
            "botocore GetItem, diagnosis only (no spans; findings, metrics, report on): "
            "conntrace vs plain",
            DIAGNOSIS_RATIO,
            diagnosis,
            plain,
        )
        # A mode that is cheap because it sees nothing does not count.
        seen, made = diagnosis.get("report_requests"), diagnosis.get("requests_made")
        if made is not None:
            blind = seen is None or seen < made
            counted = "no report" if seen is None else f"{seen:,} of {made:,}"
            row = Target(
                row.what,
                row.target,
                f"{row.measured}; requests in its report: {counted}"
                + (" (findings blind without spans)" if blind else ""),
                bool(row.met) and not blind,
            )
        rows.append(row)
    plain = _variant(results, scenarios.URLLIB3, variants.PLAIN)
    conntrace = _variant(results, scenarios.URLLIB3, variants.CONNTRACE)
    otel = _variant(results, scenarios.URLLIB3, variants.OTEL)
    if conntrace is not None:
        beside = f"; OpenTelemetry {otel['ratio']:.2f} x" if otel is not None else ""
        rows.append(
            _ratio_row(
                "urllib3 GET, reused connection: conntrace vs plain",
                URLLIB3_RATIO,
                conntrace,
                plain,
                beside,
            )
        )
    plain = _variant(results, scenarios.AIOHTTP, variants.PLAIN)
    conntrace = _variant(results, scenarios.AIOHTTP, variants.CONNTRACE)
    otel = _variant(results, scenarios.AIOHTTP, variants.OTEL)
    if conntrace is not None:
        # The urllib3 layer's target, for the aiohttp layer.
        beside = (
            f"; OpenTelemetry aiohttp-client {otel['ratio']:.2f} x ({otel['added_us']:+.0f} µs)"
            if otel is not None
            else ""
        )
        rows.append(
            _ratio_row(
                "aiohttp GET, reused connection: conntrace vs plain",
                URLLIB3_RATIO,
                conntrace,
                plain,
                beside,
            )
        )
    plain = _variant(results, scenarios.HTTPS_NEW, variants.PLAIN)
    conntrace = _variant(results, scenarios.HTTPS_NEW, variants.CONNTRACE)
    if conntrace is not None:
        rows.append(
            Target(
                "new HTTPS connection (DNS + TCP + TLS spans): time conntrace adds",
                f"≤ {NEW_CONNECTION_ADDED_US:.0f} µs",
                f"{conntrace['added_us']:+.0f} µs per connection, its request included "
                f"(CPU: {conntrace['added_cpu_us']:+.0f} µs{_calls(conntrace, plain)})",
                conntrace["added_us"] <= NEW_CONNECTION_ADDED_US,
            )
        )
    plain = _variant(results, scenarios.BOTOCORE, variants.PLAIN)
    otlp = _variant(results, scenarios.BOTOCORE, variants.OTLP)
    plain_whole = None if plain is None else plain.get("whole_cpu_us")
    if otlp is not None and otlp.get("whole_cpu_us") is not None and plain_whole:
        ratio = otlp["whole_cpu_us"] / plain_whole
        spans = otlp.get("spans_per_call")
        rows.append(
            Target(
                "the whole cost: botocore GetItem, spans sent over OTLP/gRPC to a receiver in "
                "another process; CPU of the program's process, every thread",
                f"≤ {WHOLE_CPU_RATIO:.2f} x plain's CPU",
                f"{ratio:.2f} x ({otlp['whole_cpu_us']:.0f} vs {plain_whole:.0f} µs of CPU per "
                f"call; wall {otlp['ratio']:.2f} x{_calls(otlp, plain)}"
                + (f"; {spans:.2f} spans/call received" if spans is not None else "")
                + ")",
                ratio <= WHOLE_CPU_RATIO,
            )
        )
    rows += _export_targets(results.get("export"))
    rows += _startup_targets(results.get("startup"))
    rows += _memory_targets(results.get("memory"))
    rows += _truth_targets(results.get("truth"))
    return rows


def _startup_targets(section: dict[str, Any] | None) -> list[Target]:
    if section is None:
        return []
    program = section.get("description", "import boto3")
    what = f"start-up (`{program}`): conntrace-run's added time vs opentelemetry-instrument's"
    if "not_measured" in section:
        return [Target(what, "≤ ¼", f"not measured: {section['not_measured']}", None)]
    added = section["added_ms"]
    share = section["conntrace_share_of_otel_added"]
    shown = "n/a" if share is None else f"{share:.2f}"
    return [
        Target(
            what,
            "≤ ¼",
            f"{added[variants.CONNTRACE]:+.0f} ms vs {added[variants.OTEL]:+.0f} ms ({shown})",
            share is not None and 0 <= share <= STARTUP_SHARE_OF_OTEL,
        )
    ]


def _memory_targets(section: dict[str, Any] | None) -> list[Target]:
    if section is None:
        return []
    traced = section.get(variants.OTLP, section.get(variants.CONNTRACE))
    if traced is None:
        return []
    growth = traced["growth_mb"]
    plain = section[variants.PLAIN]["growth_mb"]
    return [
        Target(
            f"memory: RSS growth over {section['requests']:,} urllib3 requests, spans "
            "exported over OTLP, report on",
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


def _name(variant: str) -> str:
    return variants.NAMES.get(variant, variants.LEGACY_NAMES.get(variant, variant))


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def _operation_table(section: dict[str, Any]) -> list[str]:
    counted = section.get("counted_calls")
    lines = [
        f"**{section['title']}** ({section['calls_per_round']} calls per round"
        + (f"; function calls counted over {counted} calls" if counted else "")
        + ")",
        "",
        "| variant | µs/call (median) | quartiles | x plain | added µs | CPU µs/call "
        "| added CPU µs | whole-process CPU µs/call, export incl. | x plain | of it GC µs "
        "| spans/call | function calls/call, all threads | of them in other threads |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, found in section["variants"].items():
        lines.append(
            f"| {_name(name)} | {found['median_us']:.1f} | "
            f"{found['q1_us']:.0f}-{found['q3_us']:.0f} | {found['ratio']:.2f} | "
            f"{found['added_us']:+.1f} | {found['cpu_us']:.1f} | {found['added_cpu_us']:+.1f} | "
            f"{_number(found.get('whole_cpu_us'), '.1f')} | "
            f"{_number(found.get('whole_cpu_ratio'), '.2f')} | {found['gc_us']:.1f} | "
            f"{_number(found.get('spans_per_call'), '.2f')} | "
            f"{_number(found.get('function_calls'), ',.0f')} | "
            f"{_number(found.get('function_calls_other_threads'), ',.0f')} |"
        )
    return lines


def _startup_table(section: dict[str, Any]) -> list[str]:
    described = section.get("description")
    title = f"`{described}`" if described else f'`python -c "{section["program"]}"`'
    lines = [
        f"**Start-up and one call, {title}, spans sent at exit**",
        "",
        "| launcher | median ms | added ms | modules it adds (own import time, ms) |",
        "|---|---|---|---|",
    ]
    extra = section.get("extra_imports_ms", {})
    for name, median in section["median_ms"].items():
        imports = extra.get(name, {})
        listed = ", ".join(f"{package} {ms:g}" for package, ms in imports.items())
        lines.append(
            f"| {_name(name)} | {median:.0f} | {section['added_ms'][name]:+.0f} | {listed or '-'} |"
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
