"""What an operator asks for: which devices (``Selector``), in which phases and how fast (``Plan``),
and when to stop (``Gates``)."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator

from control_plane.models import DeviceModel


class Gates(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_failures: int = Field(default=0, ge=0)  # devices whose install, activation or test synthesis failed
    max_error_rate: float = Field(default=0.2, ge=0, le=1)  # job attempts failed on updated devices
    min_jobs: int = Field(default=5, ge=1)  # before the error rate counts
    max_rtf_ratio: float = Field(default=1.5, gt=0)  # test-synthesis RTF, new / previous version (median)
    max_first_chunk_ratio: float = Field(default=1.5, gt=0)  # test-synthesis first chunk, new / previous
    # The test phrase as an offline recogniser hears it: a judged device's character error rate over this
    # halts (docs/rollouts.md says how 0.5 was chosen); None: the phrases are not judged at all.
    max_cer: float | None = Field(default=0.5, ge=0)
    listen_to: int = Field(default=3, ge=1)  # how many devices' phrases are judged: the first to report one


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    canary: int = Field(default=1, ge=0)  # how many devices go first (ignored when canary_ids are given)
    canary_ids: list[str] = Field(default_factory=list, max_length=1000)
    waves: list[float] = Field(default_factory=lambda: [50.0, 100.0], min_length=1, max_length=100)
    soak_s: float = Field(default=300.0, ge=0)  # after each phase, before the next
    max_in_flight: int = Field(default=10, ge=1)
    command_timeout_s: float = Field(default=300.0, gt=0)  # no report for this long: send the command again
    retry_s: float = Field(default=10.0, ge=0)  # a device busy with another update is asked again after this
    gates: Gates = Field(default_factory=Gates)

    @field_validator("waves")
    @classmethod
    def _waves(cls, v: list[float]) -> list[float]:
        if any(not 0 < w <= 100 for w in v) or v != sorted(v) or v[-1] != 100:
            raise ValueError("waves are cumulative percentages of the targets, rising, each in (0, 100], the last 100")
        return v


class Selector(BaseModel):
    """Devices running the rollout's model that have every tag in ``tags`` (e.g. "site:berlin"), plus
    those named in ``device_ids``; with neither, every device running the model."""

    model_config = ConfigDict(extra="forbid")
    tags: list[str] = Field(default_factory=list, max_length=32)
    device_ids: list[str] = Field(default_factory=list, max_length=100_000)

    def picks(self, dm: DeviceModel) -> bool:
        if not self.tags and not self.device_ids:
            return True
        return dm.device_id in self.device_ids or bool(self.tags) and set(self.tags) <= set(dm.tags or [])


class RolloutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_id: str = Field(min_length=1, max_length=100)
    version: str = Field(min_length=1, max_length=100)
    selector: Selector = Field(default_factory=Selector)
    plan: Plan = Field(default_factory=Plan)


def phases_of(ids: list[str], plan: Plan) -> dict[str, int]:
    """Phase per device: the canaries 0, then wave k (1-based) up to its cumulative percentage."""
    canaries = [d for d in plan.canary_ids if d in ids] if plan.canary_ids else ids[:plan.canary]
    rest = [d for d in ids if d not in set(canaries)]
    phase = {d: 0 for d in canaries}
    start = 0
    for k, pct in enumerate(plan.waves, 1):
        end = math.ceil(len(rest) * pct / 100)
        phase |= {d: k for d in rest[start:end]}
        start = end
    return phase
