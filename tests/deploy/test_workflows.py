"""The GitHub workflows (.github/workflows) pass actionlint; they cannot run here, so this is their check."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.tools import ROOT, tool

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "release.yml"}


def test_workflows_pass_actionlint() -> None:
    out = subprocess.run(
        [tool("actionlint"), "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n")
    out = subprocess.run([tool("actionlint"), "-no-color", str(broken)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "nope" in out.stdout, out.stdout + out.stderr
