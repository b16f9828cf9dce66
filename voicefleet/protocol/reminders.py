"""A hub's reminders, set from the control plane (control -> device ``reminder``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from voicefleet.protocol.base import Message


class ReminderCommand(Message):
    """control -> device ``reminder``: add (or replace) or delete one of a hub's reminders. The id is
    the control plane's, so a redelivered command changes nothing."""

    type: Literal["reminder"] = "reminder"
    op: Literal["add", "delete"]
    reminder_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    text: str | None = Field(default=None, max_length=500)
    at: float | None = None  # one-off, unix time
    every_s: float | None = Field(default=None, gt=0)  # recurring
    time: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")  # daily, the hub's local time
