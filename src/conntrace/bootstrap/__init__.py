"""The directory ``conntrace-run`` puts first on ``PYTHONPATH``.

Python imports its ``sitecustomize`` module at start-up, before the program: that module
switches conntrace on from the environment, then runs the program's own ``sitecustomize``.
This file only makes the directory a package, so that it ships in the wheel.
"""

import os

PATH = os.path.dirname(os.path.abspath(__file__))
