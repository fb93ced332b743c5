"""A program's own sitecustomize that fails: Python reports it and runs the program."""

raise RuntimeError("the program's sitecustomize failed")
