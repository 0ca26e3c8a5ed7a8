"""The gateway imports with its runtime dependencies alone: nothing in lockgate/ may need a test-only package.

The image installs requirements.lock (runtime only); a module that imported a test extra (httpx did,
once) would start in the tests and fail in the image. This blocks every package that only the test
extras bring and imports what `lockgate serve` imports.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pinned(lock: str) -> set[str]:
    names = re.findall(r"^([A-Za-z0-9_.-]+)==", (ROOT / lock).read_text(), re.MULTILINE)
    return {n.lower().replace("-", "_").replace(".", "_") for n in names}


def test_lockgate_imports_without_the_test_extras() -> None:
    test_only = sorted(_pinned("requirements-test.lock") - _pinned("requirements.lock"))
    # Import names that differ from distribution names, for the extras that matter here.
    blocked = set(test_only) | {"pytest", "_pytest", "openai", "anthropic", "playwright", "schemathesis", "mkdocs"}
    program = f"""
import importlib.abc, sys
BLOCKED = {sorted(blocked)!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0].lower() in BLOCKED:
            raise ModuleNotFoundError("test-only package imported at run time: " + name, name=name)
        return None
sys.meta_path.insert(0, Block())
import lockgate.app, lockgate.cli, lockgate.console, lockgate.usage.http_sink, lockgate.edge_keys
from lockgate.app import create_app
from lockgate.config import resolve_config
create_app(resolve_config(None), configure_logs=False)
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
