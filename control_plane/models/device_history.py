"""A device's status history: when it went offline, came back, was drained or cordoned, and why
(control_plane/status_history.py writes a row for each change, in the transaction that makes it)."""

from __future__ import annotations

from sqlalchemy import Index
from sqlmodel import Field, SQLModel


class DeviceStatusChange(SQLModel, table=True):
    __table_args__ = (Index("ix_devicestatuschange_device_at", "device_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(max_length=64)
    at: float = Field(index=True)  # the control plane's clock; pruning reads it alone
    kind: str = Field(max_length=16)  # online | draining | offline | cordoned | uncordoned
    status: str = Field(max_length=16)  # the device's status after the change
    cordoned: bool = False  # after the change
    reason: str = Field(default="", max_length=200)


class StatusChangePublic(SQLModel):
    """One change, newest first in the API. An ``offline`` one also says when the device came back
    (``back_at``: the next online or draining change) and how long it was away (``duration_s``); both
    are null while it is still offline."""

    at: float
    kind: str
    status: str
    cordoned: bool
    reason: str
    back_at: float | None = None
    duration_s: float | None = None
