"""Typed dependencies: the database session and the services the app's lifespan created."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session

from control_plane.api.errors import declare
from control_plane.audio_store import LocalAudioStore
from control_plane.audit import AuditWriter
from control_plane.core.config import Settings
from control_plane.dispatch import Dispatcher
from control_plane.events import EventBus
from control_plane.live import JobWatch
from control_plane.metrics import Metrics
from control_plane.registry import Registry
from control_plane.roles import Roles
from control_plane.tokens import Tokens


@dataclass
class Services:
    settings: Settings
    engine: Engine
    store: LocalAudioStore
    watch: JobWatch
    metrics: Metrics
    dispatcher: Dispatcher
    tokens: Tokens
    url_secret: bytes  # signs the URLs agents fetch prompt clips and bundle files from
    registry: Registry  # the model registry the dispatcher's rollouts read
    events: EventBus  # what the dispatcher changed, for GET /v1/events
    audit: AuditWriter  # the audit log's queue and writer (control_plane/audit.py)
    roles: Roles  # leader (runs the dispatcher) or follower (forwards to it): control_plane/roles.py


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with Session(services.engine) as session:
        yield session


get_session.responses = declare("database_unavailable")  # type: ignore[attr-defined]  (see api/errors.py)
SessionDep = Annotated[Session, Depends(get_session)]
