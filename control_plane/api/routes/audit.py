"""The audit log of state-changing calls (control_plane/audit.py): admins read it, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from control_plane import audit
from control_plane.api.auth import Admin
from control_plane.api.deps import ServicesDep, SessionDep
from control_plane.models import AuditEntryPublic
from control_plane.models.console import MAX_AUDIT_PATH

router = APIRouter(prefix="/v1/audit", tags=["audit"])
MAX_ID = 2**31 - 1  # the id column's range


@router.get("", response_model=list[AuditEntryPublic], dependencies=[Admin])
def list_audit(
    session: SessionDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many entries")] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="older than this id: the last id of "
                                                                          "the previous page")] = None,
    subject: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$",
                                         description="only this subject's calls")] = None,
    path_prefix: Annotated[str | None, Query(max_length=MAX_AUDIT_PATH, pattern=r"^/[^\x00-\x1f\x7f]*$",
                                             description="only calls whose path starts so: /v1/devices")] = None,
) -> list[AuditEntryPublic]:
    """State-changing calls (POST, PUT, PATCH, DELETE under /v1), refused ones and sign-ins included,
    newest first: who made them (token, subject, role; none when no valid credential came), the
    route's action, its path parameters as ``target``, and the HTTP status they were answered with."""
    services.audit.flush()  # what this replica has queued: a caller sees its own calls
    found = audit.entries(session, limit=limit, before_id=before_id, subject=subject, path_prefix=path_prefix)
    return [AuditEntryPublic.model_validate(e) for e in found]
