"""``python -m demo_pkg URL``: the same calls as calls.py, run as a module."""

import sys

from calls import main

sys.exit(main())
