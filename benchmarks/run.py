"""Run conntrace's benchmark suite: ``.venv/bin/python benchmarks/run.py [--quick]``.

See ``benchmarks/suite.py`` for what is measured and ``--help`` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the ``benchmarks`` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.suite import main

if __name__ == "__main__":
    main()
