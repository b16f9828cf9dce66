"""Where each job goes: capability filter → health gate → expected completion → pick.

Pure code over plain views, shared by the dispatcher, the submit check and the tests.

Jobs are bound late: the control plane keeps the queue and hands a job to an agent only when
that agent has a free slot now. The ``latency`` policy (ours) estimates, for every capable and
healthy agent, when the job would complete there:

    expected completion = round trip (measured per agent)
                        + wait for a slot (its running work, and what this pass already gave it)
                        + service time (predicted audio seconds × the agent's real-time factor)

and picks the earliest that meets the job's deadline (optionally preferring edge agents among
those). When the earliest is an agent that is busy, the job stays queued for it rather than
going to a slow agent that happens to be free: that is the difference from ``least_conn``.
``least_conn`` (nginx semantics: fewest jobs in flight among agents with a free slot, ties in
turn) and ``round_robin`` are kept for comparison (benchmarks/routing.py).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from voicefleet.protocol import Capabilities, SpeechSpec

POLICIES = ("latency", "least_conn", "round_robin")
# Priors until an agent or language has finished jobs to learn from.
PRIOR_RTF = {"cloud": 0.05, "edge": 0.3}
PRIOR_S_PER_CHAR = {"zh": 0.25, "en": 0.065}
DEFAULT_S_PER_CHAR = 0.2
PRIOR_RTT_S = 0.01
OVERHEAD_S = 0.01  # per job: frontend, first call, messages
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


@dataclass
class DeviceView:
    id: str
    status: str
    capabilities: Capabilities
    max_concurrency: int
    inflight: int = 0
    role: str | None = None
    cordoned: bool = False
    confirmed: bool = True  # a live (not retained) message arrived since it came online
    telemetry: dict[str, Any] | None = None
    running: dict[str, Running] = field(default_factory=dict)
    last_seen_at: float | None = None

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


@dataclass(frozen=True)
class JobInfo:
    id: str
    needs: SpeechSpec  # what an engine must offer: the job's spec (control_plane/jobs.py needs_of)
    chars: int
    deadline_at: float | None = None


class FleetStats:
    """What the control plane learns online: per-agent RTF, round trip and recent errors, and
    audio seconds per character per language. Kept in memory; priors cover a fresh start."""

    def __init__(self) -> None:
        self.rtf: dict[str, float] = {}
        self.rtt: dict[str, float] = {}
        self.s_per_char: dict[str, float] = {}
        self.outcomes: dict[str, deque[tuple[float, bool]]] = {}

    def audio_s(self, lang: str, chars: int) -> float:
        return max(chars, 1) * self.s_per_char.get(lang, PRIOR_S_PER_CHAR.get(lang, DEFAULT_S_PER_CHAR))

    def device_rtf(self, view: DeviceView, now: float) -> float:
        """Learned RTF, raised at once by a job in flight that already ran longer than it implies:
        an agent that turns slow is known to be slow before it finishes anything."""
        learned = self.rtf.get(view.id) or (view.telemetry or {}).get("rtf") or PRIOR_RTF.get(view.role or "", 0.1)
        evidence = max(((now - r.assigned_at - self.rtt_of(view.id)) / r.audio_s for r in view.running.values()
                        if r.audio_s > 0), default=0.0)
        return max(learned, evidence)

    def rtt_of(self, device_id: str) -> float:
        return self.rtt.get(device_id, PRIOR_RTT_S)

    def observe_done(self, device_id: str, *, lang: str, chars: int, audio_s: float, synth_s: float,
                     rtt_s: float | None) -> None:
        if audio_s > 0:
            _ewma(self.rtf, device_id, synth_s / audio_s)
            if chars > 0:
                _ewma(self.s_per_char, lang, audio_s / chars)
        if rtt_s is not None and rtt_s >= 0:
            _ewma(self.rtt, device_id, rtt_s)
        self.observe_outcome(device_id, ok=True)

    def observe_overrun(self, device_id: str, rtf_at_least: float) -> None:
        """A job taken off a device for running long still says how slow the device is."""
        _ewma(self.rtf, device_id, max(rtf_at_least, self.rtf.get(device_id, 0.0)))

    def observe_outcome(self, device_id: str, *, ok: bool) -> None:
        self.outcomes.setdefault(device_id, deque(maxlen=ERROR_WINDOW)).append((time.time(), ok))

    def error_gate(self, device_id: str) -> str | None:
        recent = [ok for t, ok in self.outcomes.get(device_id, ()) if t > time.time() - ERROR_MEMORY_S]
        failed = recent.count(False)
        if len(recent) >= ERROR_MIN and failed / len(recent) >= ERROR_RATE:
            return f"{failed} of its last {len(recent)} attempts failed"
        return None


def _ewma(table: dict[str, float], key: str, value: float) -> None:
    table[key] = value if key not in table else (1 - EWMA) * table[key] + EWMA * value


@dataclass
class Decision:
    device_id: str | None
    reason: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    policy: str = "latency"
    expected_s: float | None = None

    def explain(self) -> dict[str, Any]:
        return {"policy": self.policy, "picked": self.device_id, "reason": self.reason,
                "expected_s": self.expected_s, "candidates": self.candidates}


class Planner:
    """One scheduling pass: places queued jobs in order, keeping a virtual timeline per agent
    (when each slot frees up) so later jobs see the work earlier ones were given."""

    def __init__(self, devices: list[DeviceView], stats: FleetStats, *, policy: str = "latency",
                 prefer_edge: bool = False, rr_cursor: int = 0, now: float | None = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown scheduler policy {policy!r}; choose one of {', '.join(POLICIES)}")
        self.devices = sorted(devices, key=lambda d: d.id)
        self.stats, self.policy, self.prefer_edge = stats, policy, prefer_edge
        self.now = time.time() if now is None else now
        self.rr_cursor = rr_cursor
        self.gates = {d.id: d.gate(stats) for d in self.devices}
        self.free = {d.id: (d.max_concurrency - d.inflight if self.gates[d.id] is None else 0) for d in self.devices}
        self.rtf = {d.id: stats.device_rtf(d, self.now) for d in self.devices}
        self.slots = {d.id: self._slot_times(d) for d in self.devices}

    def _slot_times(self, d: DeviceView) -> list[float]:
        """When each of the device's slots is expected to be free, earliest first. A job past its
        estimate is expected to need half as long again as it has run (the longer it overruns,
        the less we count on that slot)."""
        times = []
        for r in d.running.values():
            end = r.assigned_at + self.stats.rtt_of(d.id) + r.audio_s * self.rtf[d.id] + OVERHEAD_S
            times.append(end if end > self.now else self.now + 0.5 * (self.now - r.assigned_at))
        times += [self.now + 1.0] * max(0, d.inflight - len(times))  # in flight but not tracked (restart)
        times += [self.now] * max(0, d.max_concurrency - len(times))
        return sorted(times)[: max(d.max_concurrency, 1)]

    def place(self, job: JobInfo) -> Decision:
        capable, considered = [], []
        for d in self.devices:
            missing, gate = d.capabilities.missing_for(job.needs), self.gates[d.id]
            if missing or gate:
                considered.append({"device": d.id, "verdict": f"cannot serve {missing}" if missing else gate})
            else:
                capable.append(d)
        if not capable:
            return Decision(None, "no capable healthy device", considered, self.policy)
        if self.policy == "latency":
            return self._by_completion(job, capable, considered)
        return self._by_connections(job, capable, considered)

    # -- ours ------------------------------------------------------------------------------

    def _by_completion(self, job: JobInfo, capable: list[DeviceView], considered: list) -> Decision:
        audio_s = self.stats.audio_s(job.needs.lang, job.chars)
        estimates = []
        for d in capable:
            start = max(self.slots[d.id][0], self.now)
            rtt, service = self.stats.rtt_of(d.id), audio_s * self.rtf[d.id] + OVERHEAD_S
            done = start + rtt + service
            estimates.append((done, d))
            considered.append({"device": d.id, "verdict": "candidate", "expected_s": round(done - self.now, 3),
                               "wait_s": round(start - self.now, 3), "rtt_s": round(rtt, 4),
                               "service_s": round(service, 3), "rtf": round(self.rtf[d.id], 4)})
        (done, device), why = self._choose(job, estimates)
        slots = self.slots[device.id]
        start_now = slots[0] <= self.now and self.free[device.id] > 0
        slots[0] = done  # this job takes the device's earliest slot until ``done``
        slots.sort()
        expected = round(done - self.now, 3)
        if start_now:
            self.free[device.id] -= 1
            return Decision(device.id, why, considered, self.policy, expected)
        return Decision(None, f"waiting for {device.id}: {why}", considered, self.policy, expected)

    def _choose(self, job: JobInfo, estimates: list) -> tuple[tuple[float, DeviceView], str]:
        estimates.sort(key=lambda e: (e[0], e[1].id))
        if job.deadline_at is None:
            return estimates[0], "earliest expected completion"
        meeting = [e for e in estimates if e[0] <= job.deadline_at]
        if not meeting:
            return estimates[0], "no device meets the deadline: earliest expected completion"
        if self.prefer_edge:
            edge = [e for e in meeting if e[1].role == "edge"]
            if edge:
                return edge[0], "edge device that meets the deadline (prefer_edge)"
        return meeting[0], "earliest expected completion, meets the deadline"

    # -- the comparison policies ----------------------------------------------------------

    def _by_connections(self, job: JobInfo, capable: list[DeviceView], considered: list) -> Decision:
        open_ = [d for d in capable if self.free[d.id] > 0]
        for d in capable:
            considered.append({"device": d.id, "verdict": "free slot" if self.free[d.id] > 0 else "no free slot",
                               "inflight": d.max_concurrency - self.free[d.id]})
        if not open_:
            return Decision(None, "no capable device has a free slot", considered, self.policy)
        if self.policy == "least_conn":
            fewest = min(d.max_concurrency - self.free[d.id] for d in open_)
            open_ = [d for d in open_ if d.max_concurrency - self.free[d.id] == fewest]
        pick = open_[self.rr_cursor % len(open_)]
        self.rr_cursor += 1
        self.free[pick.id] -= 1
        reason = "fewest jobs in flight" if self.policy == "least_conn" else "next in turn"
        return Decision(pick.id, reason, considered, self.policy)


def unservable_reason(needs: SpeechSpec, fleet: list[DeviceView], stats: FleetStats | None = None,
                      grace_s: float = 0.0, at: float = 0.0) -> str | None:
    """Why no device could serve this job now (4xx at submit), or None if one could.

    Busy is fine (the job queues); what counts is a capable device that is online and healthy, or
    one that went away less than ``grace_s`` ago (it is likely back in moments: the job waits for it).
    """
    if not fleet:
        return "no device has registered yet"
    capable = [d for d in fleet if d.capabilities.missing_for(needs) is None]
    if not capable:
        return f"no device in the fleet offers {fleet[0].capabilities.missing_for(needs)}"
    if any(d.gate(stats) is None or d.returning(grace_s, at) for d in capable):
        return None
    shown = ", ".join(f"{d.id} ({d.gate(stats)})" for d in sorted(capable, key=lambda d: d.id)[:5])
    return f"{describe(needs)} is served only by devices that cannot take jobs now: {shown}"


def describe(needs: SpeechSpec) -> str:
    parts = [f"language {needs.lang!r}"]
    if needs.dialect:
        parts.append(f"dialect {needs.dialect!r}")
    if needs.voice:
        parts.append(f"voice {needs.voice!r}")
    if needs.instruction:
        parts.append("style instructions")
    return ", ".join(parts)
