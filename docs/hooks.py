"""MkDocs hook (mkdocs.yml `hooks:`): the parts of the site that exist only once their branch lands, and
links that leave docs/.

- docs/adr/*.md, the decision records: a "Decisions" section of the nav, in file-name order.
- docs/api.md, the API page written with the spec: the nav's "API" entry instead of the placeholder.
- A relative link to a file of the repository outside docs/ (`../examples/README.md`, `../deploy/...`)
  is not part of the site: it becomes the path in code (or a link under `repo_url` when one is set).
  A link to a file that exists nowhere is left alone, so `--strict` still fails on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def on_config(config: Any) -> Any:
    docs = Path(config["docs_dir"])
    nav = config["nav"]
    if (docs / "api.md").is_file():
        _replace(nav, "reference/api.md", "api.md")
    adr = docs / "adr"
    records = sorted(p for p in adr.glob("*.md")) if adr.is_dir() else []
    if records:
        nav.append({"Decisions": [f"adr/{p.name}" for p in records]})
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs = Path(config["docs_dir"]).resolve()
    repo = docs.parent
    here = (docs / page.file.src_path).parent

    def outside(match: re.Match[str]) -> str:
        target = match.group("target")
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("/"):
            return match.group(0)  # a URL or an absolute path: MkDocs judges it
        path = (here / target).resolve()
        if path.is_relative_to(docs) or not path.is_relative_to(repo) or not path.exists():
            return match.group(0)
        relative = path.relative_to(repo).as_posix()
        if config.get("repo_url"):
            base = config["repo_url"].rstrip("/")
            return f"[{match.group('text')}]({base}/blob/main/{relative}{match.group('anchor') or ''})"
        text = match.group("text")
        return f"{text} (`{relative}`)" if text.strip("`") != relative else f"`{relative}`"

    return _LINK.sub(outside, markdown)


def _replace(nav: list[Any], old: str, new: str) -> None:
    for i, item in enumerate(nav):
        if item == old:
            nav[i] = new
        elif isinstance(item, dict):
            for key, value in item.items():
                if value == old:
                    item[key] = new
                elif isinstance(value, list):
                    _replace(value, old, new)
