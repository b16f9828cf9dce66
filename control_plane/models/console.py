"""The operator console's access: sign-in sessions (control_plane/sessions.py) and the audit log of
state-changing calls (control_plane/audit.py). A session keeps only the hash of its cookie's secret."""

from __future__ import annotations

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from voicefleet.ids import now

MAX_AUDIT_PATH = 1000  # longer paths are cut: no route has one, only a probing or fuzzing caller


class ConsoleSession(SQLModel, table=True):
    """A console sign-in: the cookie's secret stands for ``token_id`` until ``expires_at``."""

    id: str = Field(primary_key=True, max_length=64)  # sha256 of the cookie's secret
    token_id: str = Field(foreign_key="apitoken.id", max_length=16)
    csrf: str = Field(max_length=64)  # changes made with the cookie must echo it in X-CSRF-Token
    created_at: float = Field(default_factory=now)
    expires_at: float
    revoked_at: float | None = None  # signed out


class SessionCreate(SQLModel):
    # Optional in the schema so that a request without one gets the 401 every route gives a caller
    # without a credential, not a 422.
    token: str | None = Field(default=None, max_length=300, description="an API token: vft_<id>_<secret>")


class SessionPublic(SQLModel):
    """The signed-in caller, and the CSRF token its changes must carry in the X-CSRF-Token header."""

    token_id: str
    subject: str
    role: str
    csrf: str
    expires_at: float


class AuditEntry(SQLModel, table=True):
    """One state-changing call (POST, PUT, PATCH, DELETE under /v1) and how it ended."""

    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(default_factory=now)
    token_id: str | None = Field(default=None, max_length=16)  # None: no valid credential came with it
    subject: str | None = Field(default=None, index=True, max_length=64)
    role: str | None = Field(default=None, max_length=16)
    method: str = Field(max_length=8)
    path: str = Field(max_length=MAX_AUDIT_PATH)
    action: str | None = Field(default=None, max_length=100)  # the route's name (cordon); None: no route
    target: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # path parameters
    status: int


class AuditEntryPublic(SQLModel):
    id: int
    at: float
    token_id: str | None
    subject: str | None
    role: str | None
    method: str
    path: str
    action: str | None
    target: dict[str, str]
    status: int
