"""The console's static files: read once from the package at start (never written), served from memory.

Only the files listed here are served (no path from a URL ever reaches the filesystem). Each URL
carries a short hash of its content, so the files can be cached for a year and still change
with a release.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

FILES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "vendor/htmx-2.0.11/htmx.min.js": "text/javascript; charset=utf-8",
    "vendor/uplot-1.6.32/uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "vendor/uplot-1.6.32/uPlot.min.css": "text/css; charset=utf-8",
}
CACHE_FOREVER = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load() -> dict[str, Asset]:
    root = resources.files("lockgate.console") / "static"
    out = {}
    for name, media_type in FILES.items():
        body = (root / name).read_bytes()
        out[name] = Asset(body, media_type, hashlib.sha256(body).hexdigest()[:16])
    return out
