"""GET /docs: Swagger UI over /openapi.json, from assets shipped in the package (docs_assets/, see VENDOR.md).

No CDN: the page works on an air-gapped network. Its CSP allows scripts, styles and
fetches from the gateway itself only (Swagger UI sets inline style attributes, hence
'unsafe-inline' for styles alone). Paths are relative, so the page works under a prefix.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

ASSETS = Path(__file__).with_name("docs_assets")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png"}
SERVED = ("swagger-ui-bundle.js", "swagger-ui.css", "init.js", "favicon-32x32.png")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lockgate API reference</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/init.js"></script>
</body>
</html>
"""
_PAGE_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def install(app: FastAPI) -> None:
    # Read once at start-up: a handful of files, ~2 MB, never touched again.
    files = {name: (ASSETS / name).read_bytes() for name in SERVED}

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE, headers=_PAGE_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        body = files.get(name)
        if body is None:
            from lockgate.api.http import error_response
            from lockgate.errors import NotFound

            return error_response(NotFound(f"Unknown route: GET {request.url.path}"))
        headers = {"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"}
        return Response(body, media_type=_TYPES[Path(name).suffix], headers=headers)

    app.add_route("/docs", page, include_in_schema=False)
    app.add_route("/docs/assets/{name}", asset, include_in_schema=False)
