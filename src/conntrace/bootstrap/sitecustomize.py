"""Switches conntrace on at interpreter start, from the environment (see ``conntrace-run``).

Python imports the first ``sitecustomize`` on ``sys.path``; ``conntrace-run`` puts this
directory first on ``PYTHONPATH``. The program's own ``sitecustomize``, further down the
path, runs first, so that a tracer provider it sets up (``opentelemetry-instrument`` does
so) is the one conntrace uses. If conntrace cannot start, the program runs untraced after
one warning line.
"""

from __future__ import annotations


def _chain_to_next_sitecustomize() -> None:
    """Import the ``sitecustomize`` that this one hides, as Python would have done."""
    import importlib.machinery
    import importlib.util
    import os
    import sys

    def normal(entry: str) -> str:
        return os.path.normcase(os.path.abspath(entry or os.curdir))

    here = normal(os.path.dirname(os.path.abspath(__file__)))
    entries = [normal(entry) for entry in sys.path]
    first = entries.index(here) + 1 if here in entries else 0
    later = [entry for entry, n in zip(sys.path[first:], entries[first:]) if n != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", later)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    # The import statement that is running this file returns what sys.modules holds.
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _cover_closed_standard_fds() -> None:
    """Put /dev/null on standard descriptors the program was started without (``2>&-``).

    Otherwise the next file or socket opened takes that number: the exporter's connection,
    say, would then receive whatever native code (gRPC's core) writes to "stderr", or the
    program's own file would. Python has already made ``sys.stderr`` None for a closed 2,
    so the program's view of its streams does not change.
    """
    import os

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _start_conntrace() -> None:
    try:
        import os

        from conntrace import config, sdk

        _cover_closed_standard_fds()
        sdk.start(config.load_config(os.environ))
    except Exception as error:
        import contextlib
        import sys

        # No stderr (2>&-): the warning has nowhere to go, and the program runs regardless.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.write(
                f"conntrace: not started ({type(error).__name__}: {error}); "
                f"the program runs untraced ({sys.executable})\n"
            )


def _bootstrap() -> None:
    try:
        _chain_to_next_sitecustomize()
    except BaseException:
        # Python reports a failing sitecustomize and carries on: conntrace still starts,
        # and the error reaches Python's report as it was raised.
        _start_conntrace()
        raise
    _start_conntrace()


_bootstrap()
