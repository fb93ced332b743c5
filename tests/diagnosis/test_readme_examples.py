"""The pytest plugin's examples in the README pass as written, and the failing one fails as shown.

Each code block after an ``<!-- example: NAME -->`` comment becomes the file NAME in a
pytester directory; ``(fails)`` after the name marks the example whose failure the README
prints in the next block.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

# Loaded before pytester's in-process run, which unloads whatever the run imports.
import boto3  # noqa: F401
import botocore.stub  # noqa: F401
import moto.server  # noqa: F401
import pytest
import waitress  # noqa: F401

from ..cli.running import CONNTRACE_RUN, clean_environ

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


def _write_examples(directory: Path) -> tuple[int, list[str]]:
    """The examples as files; how many tests pass, and the failure's lines as fnmatch patterns."""
    text = documentation()
    examples = EXAMPLE.findall(text)
    failing = [name for name, fails, _ in examples if fails]
    assert len(failing) == 1
    for name, _fails, source in examples:
        directory.joinpath(name).write_text(source)
    passing = sum(source.count("\ndef test_") for name, fails, source in examples if not fails)
    assert passing >= 3
    shown = OUTPUT.search(text[text.index(f"example: {failing[0]}") :])
    assert shown is not None
    # Ports and connection numbers differ from run to run.
    expected = [
        re.sub(r"#\d+", "#*", re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:*", line))
        for line in shown.group(1).splitlines()
    ]
    return passing, expected


def test_the_readme_examples_pass_and_the_failing_one_fails_as_shown(pytester: pytest.Pytester):
    passing, expected = _write_examples(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=passing, failed=1)
    result.stdout.fnmatch_lines(expected)


def test_the_readme_examples_say_the_same_under_conntrace_run(tmp_path):
    """Each test's recorder has its own view of reasons: the session fixture's client made
    the first pool of the run, and the tests still see ``first``. pytest does not warn that
    it cannot rewrite conntrace, which the run imported before it."""
    passing, expected = _write_examples(tmp_path)
    run = subprocess.run(
        [
            *(str(CONNTRACE_RUN), "--exporter", "none", "python", "-m", "pytest"),
            *("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-W", "default"),
        ],
        cwd=tmp_path,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"{passing} passed" in run.stdout and "1 failed" in run.stdout, run.stdout
    assert "PytestAssertRewriteWarning" not in run.stdout + run.stderr, run.stdout
    assert "cannot be rewritten" not in run.stdout + run.stderr, run.stdout
    lines = run.stdout.splitlines()
    for pattern in expected:
        assert any(fnmatch.fnmatch(line, pattern) for line in lines), (pattern, run.stdout)
