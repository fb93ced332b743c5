"""Files a run writes at exit, one section per traced process: the JSON report, the HTML timeline.

A run may be several processes (a fork pool, subprocesses under ``conntrace-run``). Each
one adds its own section to the file as it exits, under a lock, and the file is rewritten
whole from every section of its run. Processes belong to one run when they share
``CONNTRACE_RUN_ID``, which the first traced process sets and its children inherit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Callable

ENV_RUN_ID = "CONNTRACE_RUN_ID"


def run_id() -> str:
    """This run's id, set now if this is its first traced process (its children inherit it)."""
    return os.environ.setdefault(ENV_RUN_ID, f"{os.getpid()}-{time.time_ns()}")


def at_exit(write: Callable[[], None]) -> None:
    """Call ``write`` when this process exits, forked multiprocessing workers included."""
    atexit.register(write)
    # A forked multiprocessing worker ends in os._exit, which skips atexit: its exit
    # finalizers call ``write`` instead.
    from ._patching import when_imported

    def finalize(_: object) -> None:
        import multiprocessing.util

        multiprocessing.util.Finalize(None, write, exitpriority=-100)

    def watch(module: Any) -> None:
        module.register_after_fork(finalize, finalize)

    when_imported("multiprocessing.util", watch)


def sections_of_run(existing: Any, run_id: str) -> list[dict[str, Any]]:
    """The process sections of ``existing`` (a file's data as read), if it is of this run: a
    file left by an earlier run is replaced, not merged."""
    if not run_id or not isinstance(existing, dict) or existing.get("run_id") != run_id:
        return []
    sections = existing.get("processes")
    return [s for s in sections if isinstance(s, dict)] if isinstance(sections, list) else []


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive lock on the file's folder while this process merges its section.

    The folder, not the file: the file is replaced whole, and a lock file would be left
    behind.
    """
    try:
        import fcntl
    except ImportError:  # Windows: one writer at a time is not guaranteed there.
        yield
        return
    folder = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)


def replace(path: str, text: str, prefix: str) -> None:
    """Write ``text`` to ``path`` whole or not at all."""
    if os.path.exists(path) and not os.path.isfile(path):
        # A device or pipe (/dev/stdout, /dev/null): written into, never replaced.
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)
        return
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
