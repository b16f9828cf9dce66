"""What placement reads of each device (``DeviceView``) and what the control plane learns online
(``FleetStats``): real-time factor per device *and engine*, round trip per device, recent errors,
and audio seconds per character per language. Kept in memory; priors cover a fresh start."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from voicefleet.protocol import Capabilities, EngineOffer, SpeechSpec

# Priors until a device's engine has finished jobs to learn from (and its bundle measured none).
PRIOR_RTF = {"cloud": 0.05, "edge": 0.3}
PRIOR_S_PER_CHAR = {"zh": 0.25, "en": 0.065}
DEFAULT_S_PER_CHAR = 0.2
PRIOR_RTT_S = 0.01
EWMA = 0.3
ERROR_WINDOW, ERROR_MIN, ERROR_RATE, ERROR_MEMORY_S = 10, 5, 0.5, 120.0
MEMORY_PRESSURE_PERCENT = 95.0


@dataclass
class Running:
    """An assignment in flight, as the estimates need it."""

    job_id: str
    assigned_at: float
    audio_s: float
    expected_s: float | None = None  # what the pick expected, assignment to done
    engine: str | None = None  # the engine placement chose for it


@dataclass
class DeviceView:
    id: str
    status: str
    capabilities: Capabilities  # what any of its engines can do
    max_concurrency: int
    offers: list[EngineOffer] = field(default_factory=list)  # each engine, as placement ranks them
    inflight: int = 0
    role: str | None = None
    cordoned: bool = False
    confirmed: bool = True  # a live (not retained) message arrived since it came online
    telemetry: dict[str, Any] | None = None
    running: dict[str, Running] = field(default_factory=dict)
    last_seen_at: float | None = None

    def able(self, needs: SpeechSpec) -> list[EngineOffer]:
        """Its engines that can speak ``needs``, in the device's own order."""
        return [o for o in self.offers if o.missing_for(needs) is None]

    def missing_for(self, needs: SpeechSpec) -> str | None:
        """What no single engine here offers for ``needs``, as a phrase, or None."""
        if self.able(needs):
            return None
        if not self.offers:
            return "any engine"
        return self.capabilities.missing_for(needs) or "all of these from one engine (each is offered by another)"

    def offer(self, engine: str | None) -> EngineOffer | None:
        return next((o for o in self.offers if o.name == engine), None)

    def returning(self, grace_s: float, at: float) -> bool:
        """Away (offline, or not yet confirmed after a reconnect) for less than ``grace_s``: a broker
        restart or a short network cut, after which it comes back to the jobs queued meanwhile."""
        away = self.status == "offline" or not self.confirmed
        return away and not self.cordoned and self.last_seen_at is not None and at - self.last_seen_at < grace_s

    def gate(self, stats: FleetStats | None = None) -> str | None:
        """Why this device may not take new jobs now, or None."""
        if self.status != "online":
            return self.status
        if self.cordoned:
            return "cordoned by an operator"
        if not self.confirmed:
            return "awaiting a fresh heartbeat"
        t = self.telemetry or {}
        if t.get("throttled"):
            return "thermal throttling"
        if (t.get("mem_percent") or 0) >= MEMORY_PRESSURE_PERCENT:
            return f"memory pressure ({t['mem_percent']:.0f}% used)"
        return stats.error_gate(self.id) if stats else None

    @property
    def free(self) -> int:
        return self.max_concurrency - self.inflight if self.gate() is None else 0

    @property
    def load(self) -> float:
        return self.inflight / max(self.max_concurrency, 1)


class FleetStats:
    """Learned online: RTF per (device, engine), so an eSpeak job's speed never counts for the
    neural voice on the same box; round trip and recent errors per device; audio per character."""

    def __init__(self) -> None:
        self.rtf: dict[tuple[str, str | None], float] = {}
        self.rtt: dict[str, float] = {}
        self.s_per_char: dict[str, float] = {}
        self.outcomes: dict[str, deque[tuple[float, bool]]] = {}

    def audio_s(self, lang: str, chars: int) -> float:
        return max(chars, 1) * self.s_per_char.get(lang, PRIOR_S_PER_CHAR.get(lang, DEFAULT_S_PER_CHAR))

    def engine_rtf(self, view: DeviceView, engine: str | None, now: float) -> float:
        """Learned RTF of ``engine`` on the device, raised at once by a job of it in flight that already
        ran longer than it implies: an engine that turns slow is known to be slow before it finishes."""
        learned = self.rtf.get((view.id, engine)) or self.prior_rtf(view, engine)
        evidence = max(((now - r.assigned_at - self.rtt_of(view.id)) / r.audio_s for r in view.running.values()
                        if r.audio_s > 0 and r.engine in (engine, None)), default=0.0)
        return max(learned, evidence)

    @staticmethod
    def prior_rtf(view: DeviceView, engine: str | None) -> float:
        """The engine's measured RTF from its bundle, else the device's own report when it runs one
        engine, else its role's prior."""
        offer = view.offer(engine)
        if offer is not None and offer.figures.rtf:
            return offer.figures.rtf
        reported = (view.telemetry or {}).get("rtf") if len(view.offers) <= 1 else None
        return reported or PRIOR_RTF.get(view.role or "", 0.1)

    def rtt_of(self, device_id: str) -> float:
        return self.rtt.get(device_id, PRIOR_RTT_S)

    def observe_done(self, device_id: str, engine: str | None, *, lang: str, chars: int, audio_s: float,
                     synth_s: float, rtt_s: float | None) -> None:
        if audio_s > 0:
            _ewma(self.rtf, (device_id, engine), synth_s / audio_s)
            if chars > 0:
                _ewma(self.s_per_char, lang, audio_s / chars)
        if rtt_s is not None and rtt_s >= 0:
            _ewma(self.rtt, device_id, rtt_s)
        self.observe_outcome(device_id, ok=True)

    def observe_overrun(self, device_id: str, engine: str | None, rtf_at_least: float) -> None:
        """A job taken off a device for running long still says how slow the engine is there."""
        key = (device_id, engine)
        _ewma(self.rtf, key, max(rtf_at_least, self.rtf.get(key, 0.0)))

    def observe_outcome(self, device_id: str, *, ok: bool) -> None:
        self.outcomes.setdefault(device_id, deque(maxlen=ERROR_WINDOW)).append((time.time(), ok))

    def error_gate(self, device_id: str) -> str | None:
        recent = [ok for t, ok in self.outcomes.get(device_id, ()) if t > time.time() - ERROR_MEMORY_S]
        failed = recent.count(False)
        if len(recent) >= ERROR_MIN and failed / len(recent) >= ERROR_RATE:
            return f"{failed} of its last {len(recent)} attempts failed"
        return None


def _ewma(table: dict, key, value: float) -> None:
    table[key] = value if key not in table else (1 - EWMA) * table[key] + EWMA * value
