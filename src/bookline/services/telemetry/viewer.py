"""Serves the viewer: the plain HTML/CSS/JS page in ``static/`` (no build step, works offline).

``/static/<file>`` serves a file of ``static/``; any other path outside ``/api`` and ``/v1`` (``/``,
``/traces/<id>``, ``/dashboard`` ...) serves ``static/index.html``, and the page routes itself and
reads everything through ``/api``. Until the page exists, a short "viewer not built" page says so.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

from bookline.services.common.app import error_response

STATIC_DIR = Path(__file__).parent / "static"
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bookline traces</title></head>
<body><h1>Bookline telemetry store</h1>
<p>The viewer is not built in this installation: <code>static/index.html</code> is missing.
The store is running: its API is at <a href="/api/traces">/api/traces</a>.</p></body></html>
"""
# the page changes with the package, and it is served from localhost: always revalidate
_NO_CACHE = {"Cache-Control": "no-cache"}


def _static_file(relative: str) -> Path | None:
    """The file of ``static/`` at ``relative``, or None (also for any path that leaves the folder)."""
    root = STATIC_DIR.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def _index() -> Response:
    page = _static_file("index.html")
    if page is None:
        return HTMLResponse(_NOT_BUILT, headers=_NO_CACHE)
    return FileResponse(page, media_type="text/html; charset=utf-8", headers=_NO_CACHE)


def add_viewer_routes(app: FastAPI) -> None:
    """Adds the page's routes; call it after every other route (the page takes all other paths)."""

    @app.get("/static/{path:path}", include_in_schema=False)
    async def static(path: str) -> Response:
        found = _static_file(path)
        if found is None:
            return error_response(404, "not_found", f"no file {path!r} in the viewer")
        media = _TYPES.get(found.suffix) or mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        return FileResponse(found, media_type=media, headers=_NO_CACHE)

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return _index()

    @app.get("/{path:path}", include_in_schema=False)
    async def page(path: str) -> Response:
        if path.split("/", 1)[0] in ("api", "v1", "static"):
            return error_response(404, "not_found", f"no route /{path}")
        return _index()
