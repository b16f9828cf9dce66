"""What HTTP handlers ask of the dispatcher: one typed command per request kind.

A command is plain data. ``Dispatcher.ask`` wraps it in an ``Ask`` with the future that is
settled once the batch that handled it has committed (control_plane/dispatch/outbox.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlmodel import Session

if TYPE_CHECKING:
    from control_plane.models import JobCreate
    from control_plane.rollouts import Publish, RolloutCreate, Rollouts
    from control_plane.rollouts.listening import Verdict
    from voicefleet.protocol import Message


class Command:
    """Base of every request to the dispatcher thread."""


@dataclass(frozen=True)
class Submit(Command):
    """Persist jobs (all or none) owned by ``owner``; answers their rows, or raises
    jobs.Unservable (naming the first job no device could serve) or jobs.QueueFull."""

    specs: list[JobCreate]
    owner: str | None = None
    voice_owner: str | None = None  # whose cloned voices the jobs may name; None: any (operators, admins)


@dataclass(frozen=True)
class Cancel(Command):
    """Cancel a job and tell its device; answers the job, or None if there is none."""

    job_id: str


@dataclass(frozen=True)
class SteerDevice(Command):
    """cordon (no new jobs), uncordon, or drain (cordon and take back jobs not started yet);
    answers the device, or None if there is none."""

    device_id: str
    action: Literal["cordon", "uncordon", "drain"]


@dataclass(frozen=True)
class Send(Command):
    """Publish ``message`` on a known device's ``kind`` topic (QoS 1: a device that is away gets
    it on its return); answers the device, or None if there is none."""

    device_id: str
    kind: str
    message: Message


@dataclass(frozen=True)
class MarkOffline(Command):
    """Publish a retained "offline" state for a device (its credentials were revoked, so its own
    last will may be refused): its jobs are taken back when the state comes round."""

    device_id: str


class RolloutCommand(Command):
    """An operator's rollout request, run on the dispatcher thread in its transaction; a refused
    one (RolloutError) has changed nothing: the checks come before the writes."""

    def run(self, rollouts: Rollouts, session: Session, publish: Publish) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class CreateRollout(RolloutCommand):
    spec: RolloutCreate
    by: str | None = None

    def run(self, rollouts, session, publish):
        return rollouts.create(session, publish, spec=self.spec, by=self.by)


@dataclass(frozen=True)
class SteerRollout(RolloutCommand):
    """An operator's step on one rollout; the subclasses below say which."""

    rollout_id: str
    reason: str = ""


class PauseRollout(SteerRollout):
    def run(self, rollouts, session, publish):
        return rollouts.pause(session, publish, rollout_id=self.rollout_id, reason=self.reason)


class ResumeRollout(SteerRollout):
    def run(self, rollouts, session, publish):
        return rollouts.resume(session, publish, rollout_id=self.rollout_id)


class AbortRollout(SteerRollout):
    def run(self, rollouts, session, publish):
        return rollouts.abort(session, publish, rollout_id=self.rollout_id, reason=self.reason)


class RollbackRollout(SteerRollout):
    def run(self, rollouts, session, publish):
        return rollouts.rollback(session, publish, rollout_id=self.rollout_id, reason=self.reason)


@dataclass(frozen=True)
class PinModel(RolloutCommand):
    """Pin a device to a version of a model (None: unpin); answers its DeviceModel."""

    device_id: str
    model_id: str
    version: str | None

    def run(self, rollouts, session, publish):
        return rollouts.pin(session, publish, device_id=self.device_id, model_id=self.model_id,
                            version=self.version)


@dataclass(frozen=True)
class HeardTestPhrase(RolloutCommand):
    """The rollouts' listener's verdict on a device's test phrase (control_plane/rollouts/listening.py),
    handed over from its own thread: recognition never runs on the dispatcher's."""

    verdict: Verdict

    def run(self, rollouts, session, publish):
        return rollouts.heard(session, publish, verdict=self.verdict)


@dataclass
class Ask:
    """A command on its way through the inbox, with the future its HTTP handler awaits."""

    command: Command
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
