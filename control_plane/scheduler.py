"""Where each job goes: capability filter → health gate → quality tier → expected completion → pick.

Pure code over plain views, shared by the dispatcher, the submit check and the tests.

Jobs are bound late: the control plane keeps the queue and hands a job to an agent only when
that agent has a free slot now. A device offers each of its engines (``EngineOffer``: what it
speaks, its quality tier, what was measured of it). The ``latency`` policy (ours) considers every
capable engine on every healthy device and:

1. prefers the best quality tier (flagship > neural > formant, voicefleet.protocol QUALITY_TIERS);
2. within it, picks the earliest expected completion that meets the job's deadline:

       expected completion = round trip (measured per device)
                           + wait for a slot (its running work, and what this pass already gave it)
                           + service time (predicted audio seconds × that engine's real-time factor there)

3. drops to a lower tier only when no better voice can meet the deadline, or when the caller asked
   for ``quality: fastest`` or named a voice; the decision then says what it fell back from and why.

When the pick is a busy device, the job stays queued for it rather than going to a slow or worse
voice that happens to be free: that is the difference from ``least_conn``. ``least_conn`` (nginx
semantics: fewest jobs in flight among devices with a free slot, ties in turn, then the device's
best engine) and ``round_robin`` are kept for comparison (benchmarks/routing.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from control_plane.fleet_stats import DeviceView, FleetStats, Running
from voicefleet.protocol import EngineOffer, SpeechSpec, tier_rank

__all__ = ["Decision", "DeviceView", "FleetStats", "JobInfo", "Planner", "Running", "describe",
           "unservable_reason"]

POLICIES = ("latency", "least_conn", "round_robin")
QUALITIES = ("best", "fastest")  # a job's choice: the best voice that meets its deadline, or the soonest
OVERHEAD_S = 0.01  # per job: frontend, first call, messages


@dataclass(frozen=True)
class JobInfo:
    id: str
    needs: SpeechSpec  # what an engine must offer: the job's spec (control_plane/jobs.py needs_of)
    chars: int
    deadline_at: float | None = None
    quality: str = "best"

    @property
    def named_voice(self) -> bool:
        """The caller chose a voice ("default" is no choice): it is honoured whatever its tier."""
        return self.needs.voice not in (None, "default")


@dataclass
class Decision:
    device_id: str | None
    reason: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    policy: str = "latency"
    expected_s: float | None = None
    engine: str | None = None  # the engine chosen on that device
    tier: str | None = None
    fallback: dict[str, str] | None = None  # {"from_tier", "to_tier", "reason"} when a better voice was passed over

    def explain(self) -> dict[str, Any]:
        return {"policy": self.policy, "picked": self.device_id, "engine": self.engine, "tier": self.tier,
                "reason": self.reason, "fallback": self.fallback, "expected_s": self.expected_s,
                "candidates": self.candidates}


class Estimate(NamedTuple):
    done: float
    device: DeviceView
    offer: EngineOffer
    rank: int  # the offer's tier rank


class Planner:
    """One scheduling pass: places queued jobs in order, keeping a virtual timeline per device
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
        self._rtf: dict[tuple[str, str | None], float] = {}  # a pass sees one value per (device, engine)
        self._able: dict[tuple, list[EngineOffer]] = {}  # per (device, needs): most jobs of a pass ask alike
        self.slots = {d.id: self._slot_times(d) for d in self.devices}

    def rtf(self, d: DeviceView, engine: str | None) -> float:
        key = (d.id, engine)
        if key not in self._rtf:
            self._rtf[key] = self.stats.engine_rtf(d, engine, self.now)
        return self._rtf[key]

    def _slot_times(self, d: DeviceView) -> list[float]:
        """When each of the device's slots is expected to be free, earliest first. A job past its
        estimate is expected to need half as long again as it has run (the longer it overruns,
        the less we count on that slot)."""
        times = []
        for r in d.running.values():
            end = r.assigned_at + self.stats.rtt_of(d.id) + r.audio_s * self.rtf(d, r.engine) + OVERHEAD_S
            times.append(end if end > self.now else self.now + 0.5 * (self.now - r.assigned_at))
        times += [self.now + 1.0] * max(0, d.inflight - len(times))  # in flight but not tracked (restart)
        times += [self.now] * max(0, d.max_concurrency - len(times))
        return sorted(times)[: max(d.max_concurrency, 1)]

    def place(self, job: JobInfo) -> Decision:
        options, considered, unavailable = [], [], []
        needs = (job.needs.lang, job.needs.dialect, job.needs.voice, job.needs.instruction)
        for d in self.devices:
            key = (d.id, needs)
            if key not in self._able:
                self._able[key] = d.able(job.needs)
            able, gate = self._able[key], self.gates[d.id]
            if not able or gate:
                verdict = gate if able else f"cannot serve {d.missing_for(job.needs)}"
                considered.append({"device": d.id, "verdict": verdict})
                unavailable += [(o, f"{d.id} ({gate})") for o in able]
            else:
                options.append((d, able))
        if not options:
            return Decision(None, "no capable healthy device", considered, self.policy)
        if self.policy == "latency":
            decision = self._by_completion(job, options, considered)
        else:
            decision = self._by_connections(job, options, considered)
        if decision.fallback is None and decision.tier is not None:
            decision.fallback = _unavailable_better(decision.tier, unavailable)
        return decision

    # -- ours ------------------------------------------------------------------------------

    def _by_completion(self, job: JobInfo, options: list, considered: list) -> Decision:
        audio_s = self.stats.audio_s(job.needs.lang, job.chars)
        estimates = []
        for d, able in options:
            start = max(self.slots[d.id][0], self.now)
            rtt = self.stats.rtt_of(d.id)
            for offer in able:
                name = offer.engine.name
                rtf = self.rtf(d, name)
                service = audio_s * rtf + OVERHEAD_S
                estimates.append(Estimate(start + rtt + service, d, offer, offer.rank))
                considered.append({"device": d.id, "engine": name, "tier": offer.tier, "verdict": "candidate",
                                   "expected_s": round(start + rtt + service - self.now, 3),
                                   "wait_s": round(start - self.now, 3), "rtt_s": round(rtt, 4),
                                   "service_s": round(service, 3), "rtf": round(rtf, 4)})
        pick, why, fallback = self._choose(job, estimates)
        device, slots = pick.device, self.slots[pick.device.id]
        start_now = slots[0] <= self.now and self.free[device.id] > 0
        slots[0] = pick.done  # this job takes the device's earliest slot until it is done
        slots.sort()
        expected = round(pick.done - self.now, 3)
        chosen = {"engine": pick.offer.name, "tier": pick.offer.tier, "fallback": fallback}
        if start_now:
            self.free[device.id] -= 1
            return Decision(device.id, why, considered, self.policy, expected, **chosen)
        return Decision(None, f"waiting for {device.id}: {why}", considered, self.policy, expected, **chosen)

    def _choose(self, job: JobInfo, estimates: list[Estimate]) -> tuple[Estimate, str, dict | None]:
        """The best tier that can meet the deadline, earliest within it (module docstring)."""
        estimates.sort(key=lambda e: (e.done, -e.rank, e.device.id))
        best = max(estimates, key=lambda e: e.rank).offer.tier
        if job.quality == "fastest" or job.named_voice:
            pick, why = self._earliest(job, estimates)
            asked = "the caller asked for the fastest voice" if job.quality == "fastest" \
                else f"the caller named voice {job.needs.voice!r}"
            return pick, why, _fallback(best, pick, asked)
        ranks = sorted({e.rank for e in estimates}, reverse=True)
        if len(ranks) == 1:  # one tier: no choice of quality to make
            pick, why = self._earliest(job, estimates)
            return pick, why, None
        for rank in ranks:
            group = [e for e in estimates if e.rank == rank]
            if job.deadline_at is None or any(e.done <= job.deadline_at for e in group):
                pick, why = self._earliest(job, group)
                return pick, why, None if rank == ranks[0] else _fallback(best, pick, _missed(best, estimates, job,
                                                                                             self.now))
        pick, why = self._earliest(job, [e for e in estimates if e.rank == ranks[0]])
        return pick, why, None

    def _earliest(self, job: JobInfo, estimates: list[Estimate]) -> tuple[Estimate, str]:
        if job.deadline_at is None:
            return estimates[0], "earliest expected completion"
        meeting = [e for e in estimates if e.done <= job.deadline_at]
        if not meeting:
            return estimates[0], "no device meets the deadline: earliest expected completion"
        if self.prefer_edge:
            edge = [e for e in meeting if e.device.role == "edge"]
            if edge:
                return edge[0], "edge device that meets the deadline (prefer_edge)"
        return meeting[0], "earliest expected completion, meets the deadline"

    # -- the comparison policies ----------------------------------------------------------

    def _by_connections(self, job: JobInfo, options: list, considered: list) -> Decision:
        open_ = [(d, able) for d, able in options if self.free[d.id] > 0]
        for d, _ in options:
            considered.append({"device": d.id, "verdict": "free slot" if self.free[d.id] > 0 else "no free slot",
                               "inflight": d.max_concurrency - self.free[d.id]})
        if not open_:
            return Decision(None, "no capable device has a free slot", considered, self.policy)
        if self.policy == "least_conn":
            fewest = min(d.max_concurrency - self.free[d.id] for d, _ in open_)
            open_ = [(d, able) for d, able in open_ if d.max_concurrency - self.free[d.id] == fewest]
        pick, able = open_[self.rr_cursor % len(open_)]
        self.rr_cursor += 1
        self.free[pick.id] -= 1
        offer = max(able, key=lambda o: o.rank)  # the device's best engine for the job
        reason = "fewest jobs in flight" if self.policy == "least_conn" else "next in turn"
        return Decision(pick.id, reason, considered, self.policy, engine=offer.name, tier=offer.tier)


def _fallback(best: str, pick: Estimate, why: str) -> dict[str, str] | None:
    if pick.offer.tier == best:
        return None
    return {"from_tier": best, "to_tier": pick.offer.tier, "reason": why}


def _missed(best: str, estimates: list[Estimate], job: JobInfo, now: float) -> str:
    soonest = next(e for e in estimates if e.offer.tier == best)
    return (f"no {best} voice can meet the deadline: the soonest, {soonest.offer.name} on {soonest.device.id}, "
            f"is expected in {soonest.done - now:.1f} s, the deadline is in {(job.deadline_at or now) - now:.1f} s")


def _unavailable_better(tier: str, unavailable: list[tuple[EngineOffer, str]]) -> dict[str, str] | None:
    """A better voice that can speak the job but whose device may not take jobs now, if any."""
    better = [(o, where) for o, where in unavailable if o.rank > tier_rank(tier)]
    if not better:
        return None
    top = max(o.rank for o, _ in better)
    offers = [(o, where) for o, where in better if o.rank == top]
    shown = ", ".join(f"{o.name} on {where}" for o, where in offers[:3])
    return {"from_tier": offers[0][0].tier, "to_tier": tier,
            "reason": f"no {offers[0][0].tier} voice can take jobs now: {shown}"}


def unservable_reason(needs: SpeechSpec, fleet: list[DeviceView], stats: FleetStats | None = None,
                      grace_s: float = 0.0, at: float = 0.0) -> str | None:
    """Why no device could serve this job now (4xx at submit), or None if one could.

    Busy is fine (the job queues); what counts is a capable device that is online and healthy, or
    one that went away less than ``grace_s`` ago (it is likely back in moments: the job waits for it).
    """
    if not fleet:
        return "no device has registered yet"
    capable = [d for d in fleet if d.able(needs)]
    if not capable:
        return f"no device in the fleet offers {fleet[0].missing_for(needs)}"
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
