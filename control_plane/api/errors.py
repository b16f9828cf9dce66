"""Every error answer of the API, built in one place: ``{"error": {"code", "text"}, "detail"}``.

Domain modules raise ``CodedError`` subclasses that carry a ``code`` for programs and a ``text`` for
people, and know nothing of HTTP; routes let them propagate. ``STATUS`` below is the one table that
turns a code into an HTTP status. FastAPI's own refusals (validation, 404 for an unknown path, the
401/403/429 of control_plane/api/auth.py, a route's HTTPException) come out in the same shape.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from control_plane.core.db import DatabaseUnavailable
from voicefleet.errors import CodedError
from voicefleet.protocol import request_fault

# code -> HTTP status; a code not listed is 422 (the request asked for something that is refused:
# a clip, a bundle, a voice's fields, a rollout plan).
STATUS: dict[str, int] = {
    "invalid_request": 422,  # the body or the query does not match the schema
    "too_large": 413,  # a body over its limit
    # jobs
    "unservable": 422,
    "queue_full": 429,  # with Retry-After
    "busy": 503,  # the dispatcher's inbox is full (with Retry-After)
    "database_unavailable": 503,  # nothing was written (with Retry-After)
    # voices
    "not_found": 404,
    "no_audio": 404,
    "no_embedding": 409,  # a preset, or a voice stored without one: nothing to compare (the request is sound)
    "voice_in_use": 409,  # an unfinished job speaks with the voice being deleted
    "preset_voice": 409,  # deleting a preset: the fleet's engines own it (the request is sound)
    "embeddings_unavailable": 503,
    # enrolment
    "invalid_token": 401,
    "csrf": 403,  # a change made with the console's session cookie without its X-CSRF-Token, or from another site
    "wrong_device": 409,
    "device_taken": 409,
    # models and rollouts
    "version_exists": 409,
    "unknown_version": 404,
    "unknown_device": 404,
    "unknown_rollout": 404,
    "rollout_active": 409,
    "wrong_state": 409,
}
DEFAULT_STATUS = 422


class ErrorText(BaseModel):
    code: str
    text: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: a machine ``code`` and a ``text`` that says what to fix."""

    error: ErrorText
    detail: Any = None


def error_response(code: str, text: str, *, status: int | None = None, detail: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one builder of error answers. ``detail`` keeps FastAPI's field for clients that read it:
    the text, unless there is more to say (the validation problems)."""
    body = {"error": {"code": code, "text": text}, "detail": text if detail is None else detail}
    return JSONResponse(body, status_code=status or STATUS.get(code, DEFAULT_STATUS), headers=headers)


async def _coded(request: Request, exc: CodedError) -> JSONResponse:
    retry = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
    return error_response(exc.code, exc.text, headers=retry)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable sentence per problem, naming the field and what to fix; ``detail`` keeps
    FastAPI's documented shape (loc, msg, type) for clients that parse it."""
    problems, detail = [], []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if p != "body") or "body"
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {msg}")
        detail.append({"loc": [str(p) if not isinstance(p, int) else p for p in err["loc"]], "msg": msg,
                       "type": err["type"]})
    # Text every device would refuse keeps the code the devices use for it (nothing_to_speak, ...).
    kinds = {d["type"] for d in detail}
    code = kinds.pop() if len(kinds) == 1 and request_fault(min(kinds)) else "invalid_request"
    return error_response(code, "; ".join(problems), detail=detail)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """A route's or the framework's own refusal: its status names it (``http_404``)."""
    text = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(_allowed(request.app, request.url.path))}
    return error_response(f"http_{exc.status_code}", text, status=exc.status_code, detail=exc.detail,
                          headers=headers)


def _allowed(app: FastAPI, path: str) -> list[str]:
    """Every method of the resource ``path`` is: Starlette's 405 names only its first route's (GET and
    POST /v1/voices are two routes). The resource is the first path template that matches, as the
    document says (/v1/jobs/batch, not /v1/jobs/{job_id})."""
    routes = [r for r in iter_route_contexts(app.routes) if getattr(r, "path_regex", None) is not None]
    first = next((r.path_format for r in routes if r.path_regex.match(path)), None)
    return sorted({m for r in routes if r.path_format == first for m in r.methods or ()})


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    return await _coded(request, DatabaseUnavailable(type(getattr(exc, "orig", None) or exc).__name__))


def install(app: FastAPI) -> None:
    """Answer every refusal with an ErrorBody, and describe it so in the OpenAPI document."""
    app.add_exception_handler(CodedError, _coded)
    app.add_exception_handler(OperationalError, _database_down)  # a route's own read when the database is away
    app.add_exception_handler(InterfaceError, _database_down)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.openapi = lambda: _openapi(app)


def declare(*answers: str | int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route (or a dependency's ``responses``) that may answer with these error
    codes (their statuses from ``STATUS``) or plain statuses; each status described by what causes it."""
    out: dict[int | str, dict[str, Any]] = {}
    for answer in answers:
        status = answer if isinstance(answer, int) else STATUS.get(answer, DEFAULT_STATUS)
        why = HTTPStatus(answer).phrase if isinstance(answer, int) else answer
        entry = out.setdefault(status, {"description": why})
        if why not in entry["description"].split(", "):
            entry["description"] += f", {why}"
    return out


# What a route that asks the dispatcher (control_plane/dispatch/) can answer besides its own refusals.
DISPATCHER_ANSWERS = ("busy", "database_unavailable")
# What an operation answers because of its shape, whatever its route says.
_BODY_ANSWERS = declare(400, "too_large", "invalid_request")  # unparsable, over the body limit, off the schema


def _answers(route: Any) -> dict[int | str, dict[str, Any]]:
    """Every error status ``route`` can answer: its own ``responses``, those its dependencies declare
    (``fn.responses``: the 401/403/429 of control_plane/api/auth.py, ...), and those of its shape."""
    out: dict[int | str, dict[str, Any]] = {}
    pending = [route.dependant]
    while pending:
        dep = pending.pop()
        pending += dep.dependencies
        for status, entry in getattr(dep.call, "responses", {}).items():
            out.setdefault(status, entry)
    if route.body_field is not None:
        out.update({k: v for k, v in _BODY_ANSWERS.items() if k not in out})
    return out


def _declare_answers(app: FastAPI, doc: dict) -> None:
    for route in iter_route_contexts(app.routes):  # routers included lazily too, with their prefixes
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            op = doc["paths"].get(route.path_format, {}).get(method.lower())
            if op is None:
                continue
            for status, entry in _answers(route).items():
                op["responses"].setdefault(str(status), dict(entry))


def _refusal(response: dict) -> bool:
    """Is this error answer one of ours (an ErrorBody), not a route's own model (/readyz's 503)?"""
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    return not ref or ref.endswith("/HTTPValidationError")


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, with every status each operation can answer, and every error answer described
    as the ErrorBody it really is."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        _declare_answers(app, doc)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs"))
        schemas["ErrorBody"] = body
        for ops in doc["paths"].values():
            for op in ops.values():
                for status, resp in op.get("responses", {}).items():
                    if status.startswith(("4", "5")) and _refusal(resp):
                        resp["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = doc
    return app.openapi_schema
