"""MkDocs hook (mkdocs.yml `hooks:`): the parts of the site that exist only once their branch lands.

- docs/adr/*.md, the decision records: a "Decisions" section of the nav, in file-name order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def on_config(config: Any) -> Any:
    adr = Path(config["docs_dir"]) / "adr"
    records = sorted(p for p in adr.glob("*.md")) if adr.is_dir() else []
    if records:
        config["nav"].append({"Decisions": [f"adr/{p.name}" for p in records]})
    return config
