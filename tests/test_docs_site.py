"""The documentation site: `mkdocs build --strict` over docs/ (mkdocs.yml), as `make docs` runs it.

Strict means a broken link, a missing anchor or a nav entry without its page fails the build; the built
pages must load nothing from another host (no web fonts, no CDN scripts or styles).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What a page loads at view time: scripts, stylesheets, images, frames, CSS url()/@import.
_LOADS = re.compile(
    r"<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc=[\"'](?P<src>[^\"']+)"
    r"|<link\b[^>]*\bhref=[\"'](?P<href>[^\"']+)"
    r"|url\(\s*[\"']?(?P<url>[^\"')]+)"
    r"|@import\s+[\"'](?P<imp>[^\"']+)",
    re.I,
)


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(site)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )


def copy_of_docs(tmp: Path) -> Path:
    """mkdocs.yml and docs/ in a scratch directory, to break or extend without touching the repository."""
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "mkdocs.yml", tmp / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp / "docs")
    # Pages link to the examples beside docs/ (the hook shows such links as paths): they must exist.
    shutil.copytree(ROOT / "examples", tmp / "examples", ignore=shutil.ignore_patterns("node_modules"))
    return tmp


def external_loads(site: Path) -> list[str]:
    found = []
    for path in site.rglob("*"):
        if path.suffix not in (".html", ".css"):
            continue
        for match in _LOADS.finditer(path.read_text(errors="replace")):
            target = next(v for v in match.groupdict().values() if v)
            if re.match(r"^(?:https?:)?//", target):
                found.append(f"{path.relative_to(site)}: {target}")
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT, out)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_site_builds_strict_with_every_page(site: Path) -> None:
    for page in ("index", "getting-started", "routing", "keys", "ratelimits", "usage", "anthropic", "messages"):
        assert (site / f"{page}.html").is_file(), page
    for page in ("responses", "deploy", "operations", "examples", "reference/config", "reference/cli", "reference/api"):
        assert (site / f"{page}.html").is_file(), page
    config = (site / "reference" / "config.html").read_text()
    assert "models[].deployments[].timeout_s" in config
    assert "lockgate keys create" in (site / "reference" / "cli.html").read_text()
    assert not (site / "hooks.py").exists()


def test_site_loads_nothing_from_another_host(site: Path) -> None:
    assert external_loads(site) == []
    html = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html
    assert 'src="assets/javascripts/bundle.' in html  # the theme's own script, shipped in site/


def test_the_external_check_sees_a_cdn_load(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text('<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">')
    (tmp_path / "x.css").write_text("@import url(//cdn.example.com/a.css);")
    assert len(external_loads(tmp_path)) == 2


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    root = copy_of_docs(tmp_path / "src")
    page = root / "docs" / "routing.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md) and [an anchor](keys.md#no-such-anchor).\n")
    result = build(root, tmp_path / "out")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stdout + result.stderr


def test_decision_records_join_the_nav_when_present(tmp_path: Path) -> None:
    root = copy_of_docs(tmp_path / "src")
    (root / "docs" / "adr").mkdir(exist_ok=True)
    (root / "docs" / "adr" / "0001-example.md").write_text("# 1. An example decision\n\nContext, decision, consequences.\n")
    result = build(root, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "adr/0001-example.html" in (tmp_path / "out" / "index.html").read_text()


def test_pages_of_other_branches_join_the_site(tmp_path: Path) -> None:
    """docs/api.md replaces the API placeholder in the nav; its link to ../examples/ (outside docs/) is kept as a path."""
    root = copy_of_docs(tmp_path / "src")
    (root / "examples").mkdir(exist_ok=True)
    (root / "examples" / "README.md").write_text("# Examples\n")
    (root / "docs" / "api.md").write_text("# API\n\nCopy one of the [examples](../examples/README.md).\n")
    result = build(root, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'href="api.html"' in (tmp_path / "out" / "index.html").read_text()
    assert "<code>examples/README.md</code>" in (tmp_path / "out" / "api.html").read_text()

    (root / "docs" / "api.md").write_text("# API\n\nA [missing file](../examples/nothing.md).\n")
    assert build(root, tmp_path / "out2").returncode != 0
