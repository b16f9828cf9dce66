"""The model registry and rollouts (control_plane/registry.py, control_plane/rollouts.py,
docs/rollouts.md): uploaded bundle versions, what each device runs, and rollouts wave by wave."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from voicefleet.ids import new_id, now


class ModelVersion(SQLModel, table=True):
    """An uploaded, verified bundle version; its files live under the registry's folder."""

    __table_args__ = (UniqueConstraint("model_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    model_id: str = Field(max_length=100)
    version: str = Field(max_length=100)
    engine: str = Field(max_length=64)
    key_id: str = Field(max_length=16)
    bytes: int = Field(sa_column=Column(BigInteger, nullable=False))  # all files, manifest and signature
    files: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))  # [{name, size, sha256}]
    manifest: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    uploaded_at: float = Field(default_factory=now)


class DeviceModel(SQLModel, table=True):
    """What a device with model slots runs (from its state and OTA reports), its tags, and an
    operator's pin. A device is a rollout target only once it has reported a model here."""

    device_id: str = Field(primary_key=True, max_length=64)
    model_id: str | None = Field(default=None, max_length=100)
    version: str | None = Field(default=None, max_length=100)
    slot: str | None = Field(default=None, max_length=1)
    previous_version: str | None = Field(default=None, max_length=100)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    pinned_version: str | None = Field(default=None, max_length=100)  # rollouts leave it on this version
    test: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))  # of ``version``
    updated_at: float = Field(default_factory=now)


class Rollout(SQLModel, table=True):
    """One bundle version going out to the devices a selector picked, wave by wave (its plan)."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    model_id: str = Field(max_length=100)
    version: str = Field(max_length=100)
    selector: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    plan: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    state: str = Field(default="running", index=True, max_length=16)
    phase: int = 0  # 0: canary, k: wave k
    phase_started_at: float | None = None
    soak_until: float | None = None  # this phase's devices are all updated; next phase after this
    reason: str | None = None  # why it halted, paused, was aborted or rolled back
    created_by: str | None = Field(default=None, max_length=64)
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)


class RolloutTarget(SQLModel, table=True):
    """One device of a rollout: its phase, where it stands, and what it returns to on rollback."""

    rollout_id: str = Field(primary_key=True, max_length=32)
    device_id: str = Field(primary_key=True, max_length=64, index=True)
    phase: int
    state: str = Field(default="pending", max_length=16)
    from_version: str | None = Field(default=None, max_length=100)
    baseline: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))  # test figures
    test: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    command_id: str | None = Field(default=None, max_length=64)
    sent_at: float | None = None
    activated_at: float | None = None
    error: str | None = None
    updated_at: float = Field(default_factory=now)


class RolloutEvent(SQLModel, table=True):
    """Every step of a rollout, in order: what the API and the console show."""

    id: int | None = Field(default=None, primary_key=True)
    rollout_id: str = Field(index=True, max_length=32)
    kind: str = Field(max_length=32)
    device_id: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    ts: float = Field(default_factory=now)


class ModelVersionPublic(SQLModel):
    model_id: str
    version: str
    engine: str
    key_id: str
    bytes: int
    files: list[dict[str, Any]]
    uploaded_at: float
    devices: int = 0  # running it now
    manifest: dict[str, Any] | None = None  # in the detail view only


class DeviceModelPublic(SQLModel):
    device_id: str
    model_id: str | None
    version: str | None
    slot: str | None
    previous_version: str | None
    tags: list[str]
    pinned_version: str | None
    test: dict[str, Any] | None
    updated_at: float


class RolloutTargetPublic(SQLModel):
    device_id: str
    phase: int
    state: str
    from_version: str | None
    test: dict[str, Any] | None
    baseline: dict[str, Any] | None
    error: str | None
    sent_at: float | None
    activated_at: float | None
    updated_at: float


class RolloutEventPublic(SQLModel):
    id: int
    kind: str
    device_id: str | None
    detail: dict[str, Any] | None
    ts: float


class RolloutPublic(SQLModel):
    id: str
    model_id: str
    version: str
    selector: dict[str, Any]
    plan: dict[str, Any]
    state: str
    phase: int
    phase_started_at: float | None
    soak_until: float | None
    reason: str | None
    created_by: str | None
    created_at: float
    updated_at: float
    targets: dict[str, int] = {}  # how many devices are in each state
    devices: list[RolloutTargetPublic] | None = None  # in the detail view only
