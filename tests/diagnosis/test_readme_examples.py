"""The pytest plugin's examples in the README pass as written, and the failing one fails as shown.

Each code block after an ``<!-- example: NAME -->`` comment becomes the file NAME in a
pytester directory; ``(fails)`` after the name marks the example whose failure the README
prints in the next block.
"""

from __future__ import annotations

import re
from pathlib import Path

# Loaded before pytester's in-process run, which unloads whatever the run imports.
import boto3  # noqa: F401
import botocore.stub  # noqa: F401
import moto.server  # noqa: F401
import pytest
import waitress  # noqa: F401

pytest_plugins = ["pytester"]

README = Path(__file__).parents[2] / "README.md"
# Where the section is written until it is pasted into the README.
NOTES = Path("/work/notes/readme-diagnosis.md")
EXAMPLE = re.compile(r"<!-- example: (\S+)( \(fails\))? -->\n```python\n(.*?)```\n", re.DOTALL)
OUTPUT = re.compile(r"```\n(>.*?)```", re.DOTALL)


def documentation() -> str:
    for document in (README, NOTES):
        if document.exists() and EXAMPLE.search(document.read_text()):
            return document.read_text()
    pytest.fail("no README section with the pytest plugin's examples")


def test_the_readme_examples_pass_and_the_failing_one_fails_as_shown(pytester: pytest.Pytester):
    text = documentation()
    examples = EXAMPLE.findall(text)
    failing = [name for name, fails, _ in examples if fails]
    assert len(failing) == 1
    for name, _fails, source in examples:
        pytester.path.joinpath(name).write_text(source)
    passing = sum(source.count("\ndef test_") for name, fails, source in examples if not fails)
    shown = OUTPUT.search(text[text.index(f"example: {failing[0]}") :])
    assert shown is not None

    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest")

    result.assert_outcomes(passed=passing, failed=1)
    assert passing >= 3
    # Ports and connection numbers differ from run to run.
    expected = [
        re.sub(r"#\d+", "#*", re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:*", line))
        for line in shown.group(1).splitlines()
    ]
    result.stdout.fnmatch_lines(expected)
