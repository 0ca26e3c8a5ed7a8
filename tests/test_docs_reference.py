"""The generated reference pages match their sources: docs/reference/config.md (lockgate/config/) and
docs/reference/cli.md (the `lockgate` parser). Regenerate with `python -m lockgate.docs_gen`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lockgate import docs_gen
from lockgate.config import Config


@pytest.mark.parametrize("page", sorted(docs_gen.PAGES), ids=lambda p: p.name)
def test_committed_page_is_current(page) -> None:
    expected = docs_gen.PAGES[page]()
    actual = page.read_text() if page.is_file() else ""
    assert actual == expected, (
        f"{page.relative_to(docs_gen.ROOT)} differs from what its source makes: run `{docs_gen.REGENERATE}` and commit it"
    )


def test_every_config_field_is_described() -> None:
    undescribed = [path for path, _, _, desc in docs_gen._rows(Config, "") if not desc.split(" only) ")[-1].strip()]
    assert not undescribed, f"add Field(description=...) in lockgate/config/ for: {', '.join(undescribed)}"


def test_config_page_has_every_field_with_type_and_default() -> None:
    page = docs_gen.config_page()
    for dotted in ("server.port", "models[].deployments[].timeout_s", "ratelimit.teams.<name>.rpm", "redis.on_error"):
        assert f"| `{dotted}` |" in page
    assert "| `server.port` | int (≥ 0, ≤ 65535) | `4000` |" in page
    assert "(`provider: anthropic` only)" in page


def test_cli_page_covers_every_command_and_option() -> None:
    page = docs_gen.cli_page()
    for command in (
        "serve",
        "migrate",
        "check-config",
        "keys create",
        "keys list",
        "keys revoke",
        "db upgrade",
        "teams create",
        "usage",
    ):
        assert f"`lockgate {command}`" in page
    assert "`--budget BUDGET`" in page and "one of `key`, `model`, `team`, `day`" in page


def test_check_mode_reports_the_command() -> None:
    result = subprocess.run([sys.executable, "-m", "lockgate.docs_gen", "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
