"""The habits that keep the code as it is: ruff (lint and format) and mypy over lockgate/, clean.

Their settings live in pyproject.toml; the tools are pinned in the test extras, so `make test` has them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", "lockgate", "tests", "bench"),
        ("ruff", "format", "--check", "lockgate", "tests", "bench"),
        ("mypy",),
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_is_clean(command: tuple[str, ...]) -> None:
    result = run(*command)
    assert result.returncode == 0, f"{' '.join(command)} found problems:\n{result.stdout}\n{result.stderr}"


def test_package_is_typed() -> None:
    assert (ROOT / "lockgate" / "py.typed").is_file()
