"""How the control plane's HTTP clients (the CLI, enrolment, a hub's cloud path) read an error answer.

Standard library only: the edge install uses it. Every error answer of the API is an ErrorBody,
``{"error": {"code", "text"}, "detail": ...}``; a proxy in between may answer with anything, which
is then shown as it came.
"""

from __future__ import annotations

import json
import urllib.error


class ApiError(Exception):
    """The control plane refused a request (``status``, with its error text) or was not reached (no status)."""

    def __init__(self, text: str, status: int | None = None):
        super().__init__(f"{status}: {text}" if status is not None else text)
        self.text, self.status = text, status

    @classmethod
    def from_answer(cls, exc: urllib.error.HTTPError) -> ApiError:
        return cls(error_text(exc.read()), exc.code)


def error_text(body: bytes) -> str:
    """The readable text of an error answer: the ErrorBody's text, else FastAPI's ``detail``, else the body."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return body.decode(errors="replace")
    error = doc.get("error")
    if isinstance(error, dict) and error.get("text"):
        return str(error["text"])
    return str(doc.get("detail") or body.decode(errors="replace"))
