"""Who may do what: API tokens (control_plane/tokens.py), one-time enrolment tokens and the
broker logins enrolled devices get (control_plane/enrolment.py). Only hashes of secrets are kept."""

from __future__ import annotations

from typing import Literal

from pydantic import StrictFloat, StrictInt
from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from voicefleet.ids import now
from voicefleet.protocol import DEVICE_ID_PATTERN


class ApiToken(SQLModel, table=True):
    """An API token (control_plane/tokens.py): only the hash of its secret is kept."""

    id: str = Field(primary_key=True, max_length=16)
    name: str = Field(max_length=200)
    role: str = Field(max_length=16)
    subject: str = Field(max_length=64)  # whom it acts for; a client's jobs belong to its subject
    secret_hash: str = Field(max_length=64)
    rate_per_s: float | None = None  # None: the role's default
    burst: int | None = None
    created_at: float = Field(default_factory=now)
    revoked_at: float | None = None


class ApiTokenCreate(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "operator", "viewer", "client"]
    subject: str | None = Field(default=None, min_length=1, max_length=64, regex=r"^[A-Za-z0-9_.@-]+$")
    rate_per_s: StrictFloat | None = Field(default=None, gt=0, le=100_000)  # strict: true is not 1
    burst: StrictInt | None = Field(default=None, ge=1, le=1_000_000)


class ApiTokenPublic(SQLModel):
    id: str
    name: str
    role: str
    subject: str
    rate_per_s: float | None
    burst: int | None
    created_at: float
    revoked_at: float | None
    token: str | None = None  # only in the answer that created it


class EnrolmentToken(SQLModel, table=True):
    """A one-time enrolment token: only sha256 of its secret is kept."""

    id: str = Field(primary_key=True, max_length=16)
    secret_hash: str = Field(max_length=64)
    device_id: str | None = Field(default=None, max_length=64)  # None: the device names itself
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: float = Field(default_factory=now)
    expires_at: float
    used_at: float | None = None
    used_by: str | None = Field(default=None, max_length=64)  # the device that redeemed it


class EnrolmentTokenCreate(SQLModel):
    device_id: str | None = Field(default=None, regex=DEVICE_ID_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=32)
    ttl_s: StrictFloat = Field(default=86_400.0, gt=0, le=30 * 86_400)  # how long it may be redeemed


class EnrolmentTokenPublic(SQLModel):
    id: str
    device_id: str | None
    tags: list[str]
    created_at: float
    expires_at: float
    used_at: float | None
    used_by: str | None
    token: str | None = None  # only in the answer that created it


class MqttUser(SQLModel, table=True):
    """A broker login: an enrolled device (may touch only its own topics) or a control plane
    (all of vf/v1/#). The password is kept only as Mosquitto's PBKDF2-SHA512 ``$7$`` hash."""

    username: str = Field(primary_key=True, max_length=64)  # a device's username is its device id
    kind: str = Field(max_length=16)  # device | control
    password_hash: str = Field(max_length=200)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    token_id: str | None = Field(default=None, max_length=16)  # the enrolment token it came with
    created_at: float = Field(default_factory=now)
    revoked_at: float | None = None


class MqttUserPublic(SQLModel):
    username: str
    kind: str
    tags: list[str]
    created_at: float
    revoked_at: float | None


class EnrolRequest(SQLModel):
    token: str = Field(min_length=1, max_length=200)
    device_id: str = Field(regex=DEVICE_ID_PATTERN)


class EnrolResponse(SQLModel):
    device_id: str
    mqtt_username: str
    mqtt_password: str  # given once; the control plane keeps only its hash
    tags: list[str]
