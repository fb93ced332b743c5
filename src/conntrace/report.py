"""The JSON report: totals, per-host counts and the findings of a run, for CI and scripts.

``CONNTRACE_REPORT=path`` makes conntrace write it at exit. Its keys are stable within a
``report_version``; ``report.schema.json`` (shipped next to this module) is its JSON Schema.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .findings import Diagnosis

log = logging.getLogger("conntrace")

ENV_REPORT = "CONNTRACE_REPORT"
REPORT_VERSION = 1
SCHEMA_FILE = "report.schema.json"

_lock = threading.Lock()
_at_exit: dict[str, Any] = {}


def build(diagnosis: Diagnosis) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    import conntrace

    return {
        "report_version": REPORT_VERSION,
        "conntrace_version": conntrace.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pid": os.getpid(),
        "totals": diagnosis.totals(),
        "hosts": diagnosis.hosts(),
        "findings": [finding.to_dict() for finding in diagnosis.findings()],
    }


def write(path: str, diagnosis: Diagnosis) -> None:
    """Write the report to ``path`` whole or not at all (a reader never sees half a file)."""
    text = json.dumps(build(diagnosis), indent=2, sort_keys=True) + "\n"
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".conntrace-report-", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def schema() -> dict[str, Any]:
    """The report's JSON Schema (draft 2020-12)."""
    text = resources.files("conntrace").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def write_at_exit(diagnosis: Diagnosis, environ: Mapping[str, str] = os.environ) -> bool:
    """If ``CONNTRACE_REPORT`` names a file, write ``diagnosis``'s report there at exit.

    Called again, the later diagnosis replaces the earlier one: one report per process.
    """
    path = environ.get(ENV_REPORT, "").strip()
    if not path:
        return False
    with _lock:
        first = not _at_exit
        _at_exit.update(path=path, diagnosis=diagnosis)
    if first:
        atexit.register(_write_at_exit)
    return True


def _write_at_exit() -> None:
    with _lock:
        path, diagnosis = _at_exit["path"], _at_exit["diagnosis"]
    try:
        write(path, diagnosis)
    except Exception as error:
        # The program has finished its work: a report that cannot be written is a warning.
        log.warning("conntrace: could not write the report to %s: %s", path, error)
