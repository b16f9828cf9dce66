"""The dispatcher: one thread that owns the MQTT side of the control plane (see loop.py)."""

from control_plane.dispatch.commands import (
    AbortRollout,
    Cancel,
    CreateRollout,
    MarkOffline,
    PauseRollout,
    PinModel,
    ResumeRollout,
    RollbackRollout,
    RolloutCommand,
    Send,
    SteerDevice,
    SteerRollout,
    Submit,
)
from control_plane.dispatch.context import Context
from control_plane.dispatch.inbox import Inbox, InboxFull
from control_plane.dispatch.loop import Dispatcher
from control_plane.dispatch.snapshot import DeviceStatus, FleetSnapshot

__all__ = ["AbortRollout", "Cancel", "Context", "CreateRollout", "DeviceStatus", "Dispatcher", "FleetSnapshot",
           "Inbox", "InboxFull", "MarkOffline", "PauseRollout", "PinModel", "ResumeRollout", "RollbackRollout",
           "RolloutCommand", "Send", "SteerDevice", "SteerRollout", "Submit"]
