"""docs/adr/: every record has its sections, and every test or file it cites exists (a record that cites a
renamed test fails here, so the evidence stays findable)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADR = ROOT / "docs" / "adr"


def records() -> list[Path]:
    return sorted(p for p in ADR.glob("[0-9][0-9][0-9][0-9]-*.md"))


def test_records_have_their_sections_and_are_indexed() -> None:
    index = (ADR / "README.md").read_text()
    assert len(records()) >= 9
    for path in records():
        text = path.read_text()
        assert re.match(rf"# {path.name[:4]}\. \S", text), path.name
        for section in ("Status: ", "## Context", "## Decision", "## Consequences", "Decided by: "):
            assert section in text, (path.name, section)
        assert f"]({path.name})" in index, path.name


def test_cited_files_and_tests_exist() -> None:
    for path in records():
        text = path.read_text()
        for cited in re.findall(r"\b((?:tests|bench|lockgate|deploy|docs)/[\w/.-]+\.(?:py|md))", text):
            assert (ROOT / cited).exists(), (path.name, cited)
        # `file.py (name, name)` and `file.py::name`: each named test is defined in that file.
        for cited, names in re.findall(r"(tests/[\w/]+\.py) \(([^)]*)\)", text) + re.findall(r"(tests/[\w/]+\.py)::(\w+)", text):
            source = (ROOT / cited).read_text()
            for name in re.findall(r"test_\w+", names):
                assert f"def {name}(" in source, (path.name, cited, name)
