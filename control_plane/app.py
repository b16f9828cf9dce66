"""The control plane's FastAPI app factory. Start-up order: wait for the database, migrate,
then connect to the broker and start dispatching."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlmodel import Session, func, select

from control_plane import broker_auth, console, jobs
from control_plane.api import errors
from control_plane.api.deps import Services
from control_plane.api.errors import error_response
from control_plane.api.forward import ForwardToLeader
from control_plane.api.routes import (
    audit,
    devices,
    enrolment,
    events,
    health,
    languages,
    pronounce,
    session,
    stats,
    tokens,
)
from control_plane.api.routes import jobs as job_routes
from control_plane.api.routes import models as model_routes
from control_plane.api.routes import rollouts as rollout_routes
from control_plane.api.routes import voices as voice_routes
from control_plane.audio_store import LocalAudioStore
from control_plane.audit import AuditTrail, AuditWriter
from control_plane.core.config import Settings
from control_plane.core.db import is_postgres, make_engine, upgrade, wait_for_database
from control_plane.dispatch import Context, Dispatcher, Inbox
from control_plane.dispatch.commands import HeardTestPhrase
from control_plane.leader import Leadership
from control_plane.live import JobWatch
from control_plane.metrics import Metrics
from control_plane.models import Device, RolloutEvent
from control_plane.rate_limits import SharedBuckets
from control_plane.registry import Registry
from control_plane.relay import Relay
from control_plane.roles import Roles
from control_plane.rollouts import Rollouts
from control_plane.rollouts.listening import Listener
from control_plane.signed_urls import url_secret
from control_plane.tokens import Tokens, bootstrap_admin
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
    settings.require_public_url()  # before anything starts: agents must be able to reach what jobs refer to

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = build_services(settings)
        app.state.services = services
        app.state.voices = VoiceService.from_settings(settings)
        relay = _relay(services)
        services.roles.start()  # the leader starts the dispatcher; a follower forwards to it
        events.end_streams_on_exit(services.events)
        log.info("control plane ready: database %s, broker %s", services.engine.url.render_as_string(),
                 settings.mqtt_url)
        try:
            yield
        finally:
            services.events.close()
            services.dispatcher.ctx.rollouts.listener.stop()
            services.roles.stop()
            if relay is not None:
                relay.stop()
            services.audit.close()
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
    app.include_router(pronounce.router)
    app.include_router(languages.router)
    app.include_router(session.router)
    app.include_router(events.router)
    app.include_router(audit.router)
    app.include_router(stats.router)
    console.install(app)
    errors.install(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(AuditTrail)  # it records refusals of the body limit too
    app.add_middleware(ForwardToLeader)  # outermost: a follower's changes are the leader's to run and audit
    return app


def _relay(services: Services) -> Relay | None:
    """On PostgreSQL, where replicas may run side by side, changes reach the other replicas' event
    streams and audio followers (control_plane/relay.py); SQLite has one control plane."""
    if not is_postgres(services.engine):
        return None
    relay = Relay(services.settings.resolved_database_url(), services.settings.control_id, services.events,
                  services.watch, services.tokens, services.dispatcher)
    relay.start()
    return relay


def build_services(settings: Settings) -> Services:
    url = settings.resolved_database_url()
    engine = make_engine(url)
    wait_for_database(engine)
    upgrade(url)
    # With replicas (PostgreSQL), chunks go to the shared partial file at once: a follower replica
    # streams a running job's audio from there. One control plane keeps short jobs in memory.
    store = LocalAudioStore(settings.resolved_audio_dir(), spill_bytes=0 if is_postgres(engine) else 1 << 20)
    watch = JobWatch()
    metrics = Metrics(lambda: _snapshot(engine))
    tokens = Tokens(engine, SharedBuckets(settings.redis_url) if settings.redis_url else None)
    bootstrap_admin(tokens, settings.admin_token, settings.home)
    secret = url_secret(settings.url_secret, settings.home)
    broker_auth.install(settings, engine)  # the broker must know our login before we connect
    dispatcher = build_dispatcher(settings, engine=engine, store=store, watch=watch, metrics=metrics,
                                  url_secret=secret)
    return Services(settings=settings, engine=engine, store=store, watch=watch, metrics=metrics,
                    dispatcher=dispatcher, tokens=tokens, url_secret=secret, registry=dispatcher.ctx.rollouts.registry,
                    events=dispatcher.ctx.events, audit=AuditWriter(engine),
                    roles=Roles(engine, dispatcher.ctx.leader, dispatcher, replica=settings.control_id,
                                url=settings.replica_api_url()))


def build_dispatcher(settings: Settings, *, engine, store: LocalAudioStore, watch: JobWatch, metrics: Metrics,
                     url_secret: bytes) -> Dispatcher:
    """The dispatcher with its parts: the MQTT client delivering into its inbox, and the rollouts."""
    inbox = Inbox()
    mqtt = MqttClient(settings.mqtt_url, settings.mqtt_client_id or settings.control_id, inbox=inbox,
                      subscriptions=[(t, 1) for t in p.control_subscriptions()],
                      session_expiry_s=settings.mqtt_session_expiry_s, keepalive_s=settings.mqtt_keepalive_s,
                      manual_ack=True, login=settings.mqtt_login())
    listener = Listener(settings.home / "rollouts")  # judges test phrases on its own thread
    rollouts = Rollouts(registry=Registry(settings.home / "models"), api_url=settings.api_url(),
                        url_secret=url_secret, listener=listener)
    ctx = Context(engine=engine, settings=settings, store=store, watch=watch, metrics=metrics, rollouts=rollouts,
                  url_secret=url_secret, leader=Leadership(engine, settings.control_id))
    dispatcher = Dispatcher(ctx, mqtt=mqtt, inbox=inbox)
    listener.deliver = lambda verdict: dispatcher.ask(HeardTestPhrase(verdict))
    return dispatcher


def _snapshot(engine) -> dict:
    with Session(engine) as session:
        inflight = jobs.inflight_by_device(session)
        devices_ = [{"id": d.id, "status": d.status, "max_concurrency": d.max_concurrency,
                     "inflight": inflight.get(d.id, 0)} for d in session.exec(select(Device)).all()]
        halted = session.exec(select(func.count()).where(RolloutEvent.kind == "halted")).one()
        return {"jobs_by_state": jobs.counts_by_state(session), "devices": devices_, "rollouts_halted": halted}


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
        too_large = error_response("too_large", f"request body over {limit} bytes; {hint}")
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
