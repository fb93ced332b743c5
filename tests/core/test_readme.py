"""The README lists every attribute, span, event and reason that conntrace emits."""

from __future__ import annotations

from pathlib import Path

from conntrace import attributes

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_name_in_the_attributes_module_is_documented():
    names = {
        value
        for name, value in vars(attributes).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("SPAN_")
    }
    missing = sorted(name for name in names if f"`{name}`" not in README)
    assert missing == []


def test_every_span_name_is_documented():
    spans = [value for name, value in vars(attributes).items() if name.startswith("SPAN_")]
    assert spans and all(span in README for span in spans)
