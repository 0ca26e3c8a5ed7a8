"""The admin console: server-rendered pages at `ui.path` (default /ui), same origin as the API.

`build_router(config)` makes the routes (console/router.py); app.py includes them when
`ui.enabled`. Nothing is written at start: templates and static files are read from the installed
package. Kept import-light: the audit log and the CLI import the console's tables alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter

    from lockgate.config import Config


def build_router(config: "Config") -> "APIRouter":
    from lockgate.console.router import build_router as build

    return build(config)
