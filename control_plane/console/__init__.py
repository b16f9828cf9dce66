"""The operator console: static files served at /console, a client of the public API (docs/console.md).

Nothing here reads data: the pages call /v1 like any integrator, signed in with a session cookie
(control_plane/api/routes/session.py) and kept live by /v1/events. This module only serves the files
with headers that make them safe to serve: a Content-Security-Policy with no inline script and no
other origin, and revalidation on every load so a new release is never half-cached.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware

STATIC = Path(__file__).parent / "static"

# uPlot sizes its canvas through element.style (CSSOM), which CSP allows; markup carries no style
# attribute and no inline script. Audio plays from /v1 (same origin) or a blob made from it.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}


def install(app: FastAPI) -> None:
    """Mount the console and put its security headers on every /console response."""
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/console", include_in_schema=False)
    def console_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.add_middleware(ConsoleHeaders)


class ConsoleHeaders:
    """Plain ASGI (no per-request cost elsewhere): add HEADERS to responses under /console, gzipped
    for browsers that take it (the scripts shrink about fourfold; /v1 keeps its plain answers)."""

    def __init__(self, app):
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024)
        self.raw = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/console"):
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                names = {k for k, _ in self.raw}
                message["headers"] = [h for h in message.get("headers", []) if h[0].lower() not in names] + self.raw
            await send(message)

        return await self.gzip(scope, receive, with_headers)
