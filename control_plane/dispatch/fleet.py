"""The dispatcher's working view of the fleet: each device's capabilities, health and work in
flight, what it learned of their speed, and the queue depth per tier. Only the dispatcher thread
touches it; the database is the truth it is rebuilt from at every housekeeping tick."""

from __future__ import annotations

import math
import time
from types import MappingProxyType

from sqlmodel import Session, select

from control_plane import jobs
from control_plane.dispatch.snapshot import DeviceStatus, FleetSnapshot
from control_plane.models import Device, Job
from control_plane.scheduler import DeviceView, FleetStats, Running
from voicefleet import protocol as p
from voicefleet.ids import now

TIERS = ("interactive", "batch")


class Fleet:
    def __init__(self) -> None:
        self.devices: dict[str, DeviceView] = {}
        self.stats = FleetStats()  # learned RTFs, round trips, error rates: what the estimates use
        self.rr = 0  # round-robin cursor (for the comparison policies)
        self.gates: dict[str, str | None] = {}  # each device's gate as last announced on the event bus
        # queue depth per tier, exact after each reload, tracked in between
        self.queued: dict[str, int] = dict.fromkeys(TIERS, 0)
        self.drain_rate = 0.0  # attempts ended per second, smoothed: sizes Retry-After
        self._drained = 0  # attempts ended since the last measure
        self._drained_since = time.monotonic()

    @property
    def total_queued(self) -> int:
        return sum(self.queued.values())

    def views(self) -> list[DeviceView]:
        return list(self.devices.values())

    def update(self, dev: Device) -> None:
        """Take a device row's stored state into its view (a device that never said what it can
        do has none: it cannot be scheduled)."""
        if dev.capabilities is None:
            return
        view = self.devices.get(dev.id)
        caps = p.Capabilities.model_validate(dev.capabilities)
        if view is None:
            view = self.devices[dev.id] = DeviceView(id=dev.id, status=dev.status, capabilities=caps,
                                                     max_concurrency=dev.max_concurrency)
        view.status, view.capabilities, view.max_concurrency = dev.status, caps, dev.max_concurrency
        # each engine as _on_state stored it (an agent that predates offers: its one engine)
        view.offers = [p.EngineOffer.model_validate(o) for o in dev.engines or ()]
        view.role, view.cordoned, view.telemetry = dev.role, dev.cordoned, dev.telemetry
        view.last_seen_at = dev.last_seen_at

    def gate_of(self, dev: Device) -> str | None:
        """Why the scheduler gives ``dev`` no new jobs (None: it does), from its row and its view."""
        view = self.devices.get(dev.id)
        if dev.status != "online" or view is None:
            return dev.status if dev.status != "online" else "no engines reported"
        return view.gate(self.stats)

    def reload(self, session: Session) -> None:
        """Rebuild devices, their work in flight and the queue depth from the database (what only
        memory knows, whether a device has confirmed it is back, stays)."""
        confirmed = {d.id: d.confirmed for d in self.devices.values()}
        self.devices = {}
        for dev in session.exec(select(Device)).all():
            self.update(dev)
            if dev.id in self.devices:
                self.devices[dev.id].confirmed = confirmed.get(dev.id, True)
        for job_id, device_id, assigned_at, lang, text, explain in jobs.active_assignments(session):
            view = self.devices.get(device_id)
            if view is not None:
                explain = explain or {}
                view.inflight += 1
                view.running[job_id] = Running(job_id, assigned_at or now(),
                                               self.stats.audio_s(lang, jobs.spoken_chars(text)),
                                               explain.get("expected_s"), explain.get("engine"))
        self.queued = jobs.queue_depth(session)

    def took(self, job: Job, device_id: str, expected_s: float | None, engine: str | None) -> None:
        """A queued job was assigned to ``engine`` on ``device_id``."""
        view = self.devices[device_id]
        view.inflight += 1
        audio_s = self.stats.audio_s(job.lang, jobs.spoken_chars(job.text))
        view.running[job.id] = Running(job.id, job.assigned_at, audio_s, expected_s, engine)
        self.queued[job.tier] -= 1

    def released(self, job_id: str, device_id: str | None) -> None:
        """An attempt ended: its device has a free slot."""
        view = self.devices.get(device_id or "")
        if view is not None:
            view.inflight = max(0, view.inflight - 1)
            view.running.pop(job_id, None)
        self._drained += 1

    def measure_drain(self) -> None:
        now_m = time.monotonic()
        rate = self._drained / max(now_m - self._drained_since, 1e-3)
        self.drain_rate = 0.7 * self.drain_rate + 0.3 * rate
        self._drained, self._drained_since = 0, now_m

    def retry_after(self, excess: int) -> int:
        """Seconds until the queue has drained ``excess`` jobs at the current drain rate."""
        return max(1, min(3600, math.ceil(excess / self.drain_rate))) if self.drain_rate > 0.01 else 60

    def snapshot(self) -> FleetSnapshot:
        t = now()
        devices = {}
        for v in self.devices.values():
            rtfs = {o.name: round(self.stats.engine_rtf(v, o.name, t), 4) for o in v.offers}
            devices[v.id] = DeviceStatus(id=v.id, gate=v.gate(self.stats), rtf=next(iter(rtfs.values()), None),
                                         rtt_s=round(self.stats.rtt_of(v.id), 4),
                                         engine_rtf=MappingProxyType(rtfs))
        return FleetSnapshot(devices=MappingProxyType(devices))

