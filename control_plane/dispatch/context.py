"""What every dispatch step works with, built once at start-up and passed in."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlmodel import Session

from control_plane import job_log
from control_plane.audio_store import LocalAudioStore
from control_plane.core.config import Settings
from control_plane.dispatch.fleet import Fleet
from control_plane.events import EventBus, attach
from control_plane.fencing import fence
from control_plane.leader import Leadership
from control_plane.live import JobWatch
from control_plane.metrics import Metrics
from control_plane.rollouts import Rollouts


@dataclass
class Context:
    engine: Engine
    settings: Settings
    store: LocalAudioStore
    watch: JobWatch
    metrics: Metrics
    rollouts: Rollouts
    url_secret: bytes = b""
    leader: Leadership | None = None  # who runs the singletons among replicas; None: this one, always
    epoch: int | None = None  # the leader's term its transactions are fenced by (control_plane/fencing.py)
    fleet: Fleet = field(default_factory=Fleet)
    prompt_hashes: dict[str, str] = field(default_factory=dict)  # cloned voices' prompt files, by storage key
    events: EventBus = field(default_factory=EventBus)  # what changed, published after each commit (events.py)
    # Seconds the dispatcher's own broker connection has been up (0 while down): the devices' silence
    # is only theirs once it has been up for a heartbeat timeout. The dispatcher sets it.
    link_age: Callable[[], float] = lambda: math.inf

    def session(self) -> Session:
        # No autoflush: within a batch we know what we changed; nothing expires on commit so
        # objects handed to HTTP handlers stay readable.
        session = job_log.attach(attach(Session(self.engine, autoflush=False, expire_on_commit=False), self.events))
        return session if self.epoch is None else fence(session, self.epoch)

    def leads(self) -> bool:
        leading = self.leader is None or self.leader.check()
        self.metrics.leader.set(int(leading))
        return leading

    def reload_fleet(self) -> None:
        with self.session() as session:
            self.fleet.reload(session)
