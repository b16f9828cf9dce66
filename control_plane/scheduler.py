"""The first scheduler: capability match, then the least loaded device with a free slot.

Pure functions over plain views, so the dispatcher, the submit check and tests share them.
Jobs are bound late: a job leaves the queue only when a device has a free slot for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voicefleet.protocol import Capabilities

POLICY = "least_loaded/v1"


@dataclass
class DeviceView:
    id: str
    status: str
    capabilities: Capabilities
    max_concurrency: int
    inflight: int = 0

    @property
    def free(self) -> int:
        return self.max_concurrency - self.inflight if self.status == "online" else 0

    @property
    def load(self) -> float:
        return self.inflight / max(self.max_concurrency, 1)


@dataclass(frozen=True)
class JobNeeds:
    lang: str
    dialect: str | None = None
    voice: str | None = None
    instruction: str | None = None

    def missing_on(self, caps: Capabilities) -> str | None:
        return caps.missing_for(lang=self.lang, dialect=self.dialect, voice=self.voice,
                                instruction=self.instruction)


@dataclass
class Decision:
    device_id: str | None
    reason: str
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def explain(self) -> dict[str, Any]:
        return {"policy": POLICY, "picked": self.device_id, "reason": self.reason,
                "candidates": self.candidates}


def pick_device(needs: JobNeeds, devices: list[DeviceView]) -> Decision:
    """The capable online device with a free slot and the lowest load (ties: by id)."""
    considered: list[dict[str, Any]] = []
    eligible: list[DeviceView] = []
    for d in devices:
        missing = needs.missing_on(d.capabilities)
        if missing:
            verdict = f"cannot serve {missing}"
        elif d.status != "online":
            verdict = d.status
        elif d.free <= 0:
            verdict = "no free slot"
        else:
            verdict = "eligible"
            eligible.append(d)
        considered.append({"device": d.id, "load": round(d.load, 3), "verdict": verdict})
    if not eligible:
        return Decision(None, "no capable device has a free slot", considered)
    best = min(eligible, key=lambda d: (d.load, d.id))
    return Decision(best.id, f"least loaded capable device (load {best.load:.2f})", considered)


def unservable_reason(needs: JobNeeds, fleet: list[Capabilities]) -> str | None:
    """Why no device the fleet has ever registered could serve this job, or None if one could."""
    if not fleet:
        return "no device has registered yet"
    missing = [needs.missing_on(caps) for caps in fleet]
    if all(missing):
        return f"no device in the fleet offers {missing[0]}"
    return None
