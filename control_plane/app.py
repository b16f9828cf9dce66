"""The control plane's FastAPI app factory. Start-up order: wait for the database, migrate,
then connect to the broker and start dispatching."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import Session, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from control_plane import broker_auth, jobs
from control_plane.api.deps import Services
from control_plane.api.routes import devices, enrolment, health, tokens
from control_plane.api.routes import jobs as job_routes
from control_plane.api.routes import models as model_routes
from control_plane.api.routes import rollouts as rollout_routes
from control_plane.api.routes import voices as voice_routes
from control_plane.audio_store import LocalAudioStore
from control_plane.auth import Tokens, bootstrap_admin, url_secret
from control_plane.core.config import Settings
from control_plane.core.db import make_engine, upgrade, wait_for_database
from control_plane.dispatch import Context, Dispatcher, Inbox
from control_plane.live import JobWatch
from control_plane.metrics import Metrics
from control_plane.models import Device
from control_plane.registry import Registry
from control_plane.rollouts import Rollouts
from control_plane.voices import VoiceService
from voicefleet import protocol as p
from voicefleet.mqtt import MqttClient

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1 << 20
# Larger bodies for these paths only: (bytes, what to do instead)
BODY_LIMITS = {"/v1/voices": (voice_routes.MAX_UPLOAD_BODY_BYTES, voice_routes.TOO_LARGE_HINT),
               "/v1/models": (model_routes.MAX_UPLOAD_BYTES, model_routes.TOO_LARGE_HINT)}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = build_services(settings)
        app.state.services = services
        app.state.voices = VoiceService.from_settings(settings)
        services.dispatcher.start()
        log.info("control plane ready: database %s, broker %s", services.engine.url.render_as_string(),
                 settings.mqtt_url)
        try:
            yield
        finally:
            services.dispatcher.stop()
            services.engine.dispose()

    app = FastAPI(title="voicefleet control plane", version="0.1.0", lifespan=lifespan)
    app.include_router(health.router)
    app.include_router(job_routes.router)
    app.include_router(devices.router)
    app.include_router(voice_routes.router)
    app.include_router(model_routes.router)
    app.include_router(rollout_routes.router)
    app.include_router(tokens.router)
    app.include_router(enrolment.router)
    app.openapi = lambda: _openapi(app)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(BodyLimit)
    return app


class ErrorText(BaseModel):
    code: str
    text: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: a machine ``code`` and a ``text`` that says what to fix."""

    error: ErrorText
    detail: Any = None


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, with every error answer described as the ErrorBody it really is."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs"))
        schemas["ErrorBody"] = body
        for ops in doc["paths"].values():
            for op in ops.values():
                for status, resp in op.get("responses", {}).items():
                    if status.startswith(("4", "5")):
                        resp["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = doc
    return app.openapi_schema


def build_services(settings: Settings) -> Services:
    url = settings.resolved_database_url()
    engine = make_engine(url)
    wait_for_database(engine)
    upgrade(url)
    store = LocalAudioStore(settings.resolved_audio_dir())
    watch = JobWatch()
    metrics = Metrics(lambda: _snapshot(engine))
    tokens = Tokens(engine)
    bootstrap_admin(tokens, settings.admin_token, settings.home)
    secret = url_secret(settings.url_secret, settings.home)
    broker_auth.install(settings, engine)  # the broker must know our login before we connect
    dispatcher = build_dispatcher(settings, engine=engine, store=store, watch=watch, metrics=metrics,
                                  url_secret=secret)
    return Services(settings=settings, engine=engine, store=store, watch=watch, metrics=metrics,
                    dispatcher=dispatcher, tokens=tokens, url_secret=secret, registry=dispatcher.ctx.rollouts.registry)


def build_dispatcher(settings: Settings, *, engine, store: LocalAudioStore, watch: JobWatch, metrics: Metrics,
                     url_secret: bytes) -> Dispatcher:
    """The dispatcher with its parts: the MQTT client delivering into its inbox, and the rollouts."""
    inbox = Inbox()
    mqtt = MqttClient(settings.mqtt_url, settings.control_id, inbox=inbox,
                      subscriptions=[(t, 1) for t in p.control_subscriptions()],
                      session_expiry_s=settings.mqtt_session_expiry_s, keepalive_s=settings.mqtt_keepalive_s,
                      manual_ack=True, login=settings.mqtt_login())
    rollouts = Rollouts(registry=Registry(settings.home / "models"), api_url=settings.api_url(),
                        url_secret=url_secret)
    ctx = Context(engine=engine, settings=settings, store=store, watch=watch, metrics=metrics, rollouts=rollouts,
                  url_secret=url_secret)
    return Dispatcher(ctx, mqtt=mqtt, inbox=inbox)


def _snapshot(engine) -> dict:
    with Session(engine) as session:
        inflight = jobs.inflight_by_device(session)
        devices_ = [{"id": d.id, "status": d.status, "max_concurrency": d.max_concurrency,
                     "inflight": inflight.get(d.id, 0)} for d in session.exec(select(Device)).all()]
        return {"jobs_by_state": jobs.counts_by_state(session), "devices": devices_}


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
    return JSONResponse({"error": {"code": "invalid_request", "text": "; ".join(problems)}, "detail": detail},
                        status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Every error has the same shape: {"error": {"code", "text"}} (and FastAPI's "detail")."""
    text = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse({"error": {"code": f"http_{exc.status_code}", "text": text}, "detail": exc.detail},
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


class BodyLimit:
    """Refuse oversized bodies: by Content-Length before reading them; a chunked body (no length) is
    read up to the limit, then passed on (plain ASGI: no per-request overhead otherwise)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        limit, hint = BODY_LIMITS.get(scope["path"], (MAX_BODY_BYTES, "send less"))
        too_large = JSONResponse({"error": {"code": "too_large", "text": f"request body over {limit} bytes; {hint}"}},
                                 status_code=413)
        if length is not None:
            if length.isdigit() and int(length) > limit:
                return await too_large(scope, receive, send)
            return await self.app(scope, receive, send)
        parts, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > limit:
                return await too_large(scope, receive, send)
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(parts), "more_body": False}]

        async def buffered():
            return replay.pop() if replay else await receive()

        return await self.app(scope, buffered, send)
