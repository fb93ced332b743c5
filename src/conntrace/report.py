"""The JSON report: totals, per-host counts and the findings of a run, for CI and scripts.

``CONNTRACE_REPORT=path`` makes conntrace write it at exit. Its keys are stable within a
``report_version``; ``report.schema.json`` (shipped next to this module) is its JSON Schema.

A run may be several processes (a fork pool, subprocesses under ``conntrace-run``): each
traced process adds its own section to ``processes`` as it exits, under a lock on the
file, and the top-level ``totals``, ``hosts`` and ``findings`` are recomputed over every
section. Processes belong to one run when they share ``CONNTRACE_RUN_ID``, which the first
traced process sets and its children inherit; a report left by an earlier run is replaced.
The counts come from the connection ledger, so they are exact whatever the trace sampler
keeps.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from . import _runfiles
from ._runfiles import ENV_RUN_ID

if TYPE_CHECKING:
    from .findings import Diagnosis

log = logging.getLogger("conntrace")

ENV_REPORT = "CONNTRACE_REPORT"
REPORT_VERSION = 3
SCHEMA_FILE = "report.schema.json"
EXACT = "exact: every call is counted, whatever the trace sampler keeps"

_lock = threading.Lock()
_at_exit: dict[str, Any] = {}


def section(diagnosis: Diagnosis) -> dict[str, Any]:
    """What this process saw, as one entry of ``processes``."""
    from .config import program_name

    return {
        "pid": os.getpid(),
        "program": program_name(sys.argv if sys.argv and sys.argv[0] else ["python"]),
        "made_with": _made_with(),
        "totals": diagnosis.totals(),
        "hosts": diagnosis.hosts(),
        "findings": [{**finding.to_dict(), "pid": os.getpid()} for finding in diagnosis.findings()],
    }


def build(sections: Sequence[Mapping[str, Any]], run_id: str = "") -> dict[str, Any]:
    """The report of a run made of these process sections, as a JSON-ready dict."""
    import conntrace

    first = sections[0] if sections else {}
    return {
        "report_version": REPORT_VERSION,
        "conntrace_version": conntrace.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_id": run_id,
        "made_with": {**first.get("made_with", _made_with()), "processes": len(sections)},
        "totals": _sum([s["totals"] for s in sections]),
        "hosts": _merge_hosts([host for s in sections for host in s["hosts"]]),
        "findings": [finding for s in sections for finding in s["findings"]],
        "processes": list(sections),
    }


def write(path: str, diagnosis: Diagnosis) -> None:
    """Add this process's section to the report at ``path``, whole or not at all."""
    run_id = os.environ.get(ENV_RUN_ID, "")
    mine = section(diagnosis)
    with _runfiles.locked(path):
        sections = [s for s in _sections_of(path, run_id) if s.get("pid") != mine["pid"]]
        text = json.dumps(build([*sections, mine], run_id), indent=2, sort_keys=True) + "\n"
        _runfiles.replace(path, text, ".conntrace-report-")


def schema() -> dict[str, Any]:
    """The report's JSON Schema (draft 2020-12)."""
    text = resources.files("conntrace").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def write_at_exit(diagnosis: Diagnosis, environ: Mapping[str, str] = os.environ) -> bool:
    """If ``CONNTRACE_REPORT`` names a file, add ``diagnosis``'s section to it at exit.

    Called again, the later diagnosis replaces the earlier one: one section per process.
    """
    path = environ.get(ENV_REPORT, "").strip()
    if not path:
        return False
    # The processes this one starts belong to its run.
    _runfiles.run_id()
    with _lock:
        first = not _at_exit
        _at_exit.update(path=path, diagnosis=diagnosis)
    if first:
        _runfiles.at_exit(_write_at_exit)
    return True


def _write_at_exit() -> None:
    with _lock:
        path, diagnosis = _at_exit.get("path"), _at_exit.get("diagnosis")
    if path is None or diagnosis is None:
        return
    try:
        write(path, diagnosis)
    except Exception as error:
        # The program has finished its work: a report that cannot be written is a warning.
        log.warning("conntrace: could not write the report to %s: %s", path, error)


def _sections_of(path: str, run_id: str) -> list[dict[str, Any]]:
    """The sections already in the report, if it belongs to this run."""
    try:
        with open(path, encoding="utf-8") as file:
            existing = json.load(file)
    except (OSError, ValueError):
        return []
    return _runfiles.sections_of_run(existing, run_id)


# Per host, these keys are the largest any process saw, these name the host; every other
# number adds up.
_LARGEST = {"pool_max_size", "max_concurrency", "peak_in_flight"}
_SAME = {"server_address", "server_port", "proxy_address", "proxy_port"}
_ORIGINS = "origins"


def _sum(values: Sequence[Any], key: str = "") -> Any:
    if not values:
        return {}
    first = values[0]
    if key == _ORIGINS:
        return _merge_origins([origin for value in values for origin in value])
    if isinstance(first, dict):
        keys = dict.fromkeys(k for value in values for k in value)
        return {k: _sum([value[k] for value in values if k in value], k) for k in keys}
    if key in _SAME or isinstance(first, bool) or not isinstance(first, (int, float)):
        return first
    total = max(values) if key in _LARGEST else sum(values)
    return round(total, 3) if isinstance(total, float) else total


def _merge_origins(origins: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per code location and library, its pools added up, most pools first."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for origin in origins:
        key = tuple(origin[name] for name in ("file", "line", "function", "library", "service"))
        entry = merged.setdefault(key, {**origin, "pools": 0})
        entry["pools"] += origin["pools"]
    return sorted(merged.values(), key=lambda entry: -entry["pools"])


def _merge_hosts(hosts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    by_server: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for host in hosts:
        by_server.setdefault((host["server_address"], host["server_port"]), []).append(host)
    return [_sum(by_server[server]) for server in sorted(by_server)]


def _made_with() -> dict[str, Any]:
    """How the counts were made: the trace sampler in place, and that they do not depend on it."""
    from . import sdk

    session = sdk.current()
    if session is not None:
        config = session.config
        sampler, argument = config.sampler, config.sampler_arg
        traces = bool(config.traces_exporters) and not config.sdk_disabled
    else:
        from . import _runtime

        tracer = getattr(_runtime.tracer, "_real_tracer", None) or _runtime.tracer
        described = getattr(getattr(tracer, "sampler", None), "get_description", None)
        sampler, argument = (described() if described else "none"), None
        traces = described is not None
    return {"sampler": sampler, "sampler_arg": argument, "traces": traces, "counts": EXACT}
