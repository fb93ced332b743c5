"""A conntrace that cannot be imported, placed ahead of the real one on PYTHONPATH."""

raise ImportError("this conntrace is broken on purpose")
