"""The demo page: ``GET /`` and its static files under ``/static/``, all from ``app/static``.

Plain routes rather than a ``Mount``: ``include_router`` keeps only routes, and the page must
come along whichever way the app adds its routers. The page loads nothing from other origins; its
Content-Security-Policy says so to the browser too.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.errors import ApiError
from app.ranges import WholeFileResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["demo"], include_in_schema=False)


def static_file(relative: str) -> FileResponse:
    """A file under ``app/static`` with a known suffix; 404 for anything else (no traversal)."""
    missing = ApiError(404, "not_found", f"no static file {relative!r}")
    try:
        path = (STATIC_DIR / relative).resolve()
        found = path.is_relative_to(STATIC_DIR) and path.is_file()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
        raise missing from exc
    media = MEDIA_TYPES.get(path.suffix)
    if media is None or not found:
        raise missing
    return WholeFileResponse(path, media_type=media, headers=PAGE_HEADERS)  # Range ignored


@router.get("/")
async def page() -> FileResponse:
    """The demo page: denoise images, draw samples, encode and interpolate digits."""
    return static_file("index.html")


@router.get("/static/{relative:path}")
async def asset(relative: str) -> FileResponse:
    return static_file(relative)
