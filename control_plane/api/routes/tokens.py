"""API tokens: admins create, list and revoke them; anyone can ask who their token says they are."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from sqlmodel import select

from control_plane.api.auth import Admin, PrincipalDep
from control_plane.api.deps import ServicesDep, SessionDep
from control_plane.api.errors import declare
from control_plane.models import ApiToken, ApiTokenCreate, ApiTokenPublic
from control_plane.tokens import Role

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=ApiTokenPublic, dependencies=[Admin])
async def create_token(body: ApiTokenCreate, services: ServicesDep) -> ApiTokenPublic:
    """A new token; its secret is in this answer only (``token``): store it, it cannot be shown again."""
    row, token = await run_in_threadpool(services.tokens.create, role=Role(body.role), name=body.name,
                                         subject=body.subject, rate_per_s=body.rate_per_s, burst=body.burst)
    return ApiTokenPublic.model_validate(row, update={"token": token})


@router.get("", response_model=list[ApiTokenPublic], dependencies=[Admin])
def list_tokens(session: SessionDep) -> list[ApiTokenPublic]:
    return [ApiTokenPublic.model_validate(t) for t in session.exec(select(ApiToken).order_by(ApiToken.created_at))]


@router.get("/me", response_model=ApiTokenPublic)
def whoami(who: PrincipalDep, session: SessionDep) -> ApiTokenPublic:
    return ApiTokenPublic.model_validate(session.get(ApiToken, who.token_id))


@router.delete("/{token_id}", response_model=ApiTokenPublic, dependencies=[Admin], responses=declare(404))
async def revoke_token(token_id: str, services: ServicesDep) -> ApiTokenPublic:
    """Revoke a token; it stops working at once on this replica, within seconds on others."""
    row = await run_in_threadpool(services.tokens.revoke, token_id)
    if row is None:
        raise HTTPException(404, f"no token {token_id!r}")
    return ApiTokenPublic.model_validate(row)
