"""Liveness and readiness (open to all: probes carry no token), and Prometheus metrics (a viewer token)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy import text

from control_plane.api.auth import Reader
from control_plane.api.deps import ServicesDep, SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "not ready: a check failed"}})
def readyz(session: SessionDep, services: ServicesDep, response: Response) -> dict:
    checks = {"database": _database_ok(session)}
    if services.roles.leading:  # the dispatcher runs here
        checks["broker"] = services.dispatcher.connected
    else:  # a follower forwards changes to the leader
        checks["leader"] = services.roles.leader_url() is not None
    if not all(checks.values()):
        response.status_code = 503
    return {"ready": all(checks.values()), "checks": checks}


def _database_ok(session) -> bool:
    try:
        session.exec(text("select 1"))
        return True
    except Exception:
        return False


@router.get("/metrics", dependencies=[Reader], response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
