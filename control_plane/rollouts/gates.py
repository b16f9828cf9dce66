"""The gates: what the devices already updated say about the version, evaluated all the time."""

from __future__ import annotations

import statistics
from typing import Any

from sqlmodel import Session, col, select

from control_plane.models import JobEvent, Rollout, RolloutTarget
from control_plane.rollouts.listening import heard_cer
from control_plane.rollouts.plans import Plan
from control_plane.rollouts.states import NOT_MODEL_ERRORS


def gate_breach(session: Session, rollout: Rollout, targets: list[RolloutTarget]) -> str | None:
    """Why the updated devices say this version must not go further, or None."""
    gates = Plan.model_validate(rollout.plan).gates
    failed = [t for t in targets if t.state == "failed"]
    if len(failed) > gates.max_failures:
        tests = sum("test" in (t.error or "").split(":")[0] for t in failed)
        what = f"test synthesis failed on {tests} device(s)" if tests else "install/activation failed"
        ids = ", ".join(t.device_id for t in failed[:5])
        return f"gate failures: {what}, {len(failed)} failed > {gates.max_failures} allowed ({ids})"
    if breach := cer_breach(targets, gates.max_cer):
        return breach
    updated = updated_of(targets)
    if not updated:
        return None
    ok, bad = job_outcomes(session, updated)
    if ok + bad >= gates.min_jobs and bad / (ok + bad) > gates.max_error_rate:
        return f"gate error_rate: {bad} of {ok + bad} jobs failed on updated devices > {gates.max_error_rate:.0%}"
    for key, limit in (("rtf", gates.max_rtf_ratio), ("first_chunk_s", gates.max_first_chunk_ratio)):
        ratios = ratios_to_baseline(updated, key)
        if ratios and statistics.median(ratios) > limit:
            return (f"gate {key}: test synthesis {statistics.median(ratios):.2f}x the previous version's "
                    f"(median of {len(ratios)} device(s)) > {limit:g}x")
    return None


def gate_figures(session: Session, rollout: Rollout, targets: list[RolloutTarget]) -> list[dict[str, Any]]:
    """Each gate's limit and what the rollout's devices measure against it now, for people watching it:
    ``value`` (None: nothing measured yet), ``count`` (the failures, job attempts, devices or phrases it
    is made of) and ``over`` (what gate_breach halts on)."""
    gates = Plan.model_validate(rollout.plan).gates
    failed = sum(t.state == "failed" for t in targets)
    updated = updated_of(targets)
    ok, bad = job_outcomes(session, updated) if updated else (0, 0)
    rate = bad / (ok + bad) if ok + bad else None
    rows = [_figure("max_failures", gates.max_failures, failed, failed, failed > gates.max_failures),
            _figure("max_error_rate", gates.max_error_rate, rate, ok + bad,
                    rate is not None and ok + bad >= gates.min_jobs and rate > gates.max_error_rate)]
    for gate, key, limit in (("max_rtf_ratio", "rtf", gates.max_rtf_ratio),
                             ("max_first_chunk_ratio", "first_chunk_s", gates.max_first_chunk_ratio)):
        ratios = ratios_to_baseline(updated, key)
        median = statistics.median(ratios) if ratios else None
        rows.append(_figure(gate, limit, median, len(ratios), median is not None and median > limit))
    heard = [cer for t in targets if (cer := heard_cer(t)) is not None]
    worst = max(heard) if heard else None
    rows.append(_figure("max_cer", gates.max_cer, worst, len(heard),
                        None not in (worst, gates.max_cer) and worst > gates.max_cer))
    return rows


def _figure(gate: str, limit: float | None, value: float | None, count: int, over: bool) -> dict[str, Any]:
    return {"gate": gate, "limit": limit, "value": value, "count": count, "over": over}


def updated_of(targets: list[RolloutTarget]) -> list[RolloutTarget]:
    """The targets this rollout updated: what the gates judge."""
    return [t for t in targets if t.state == "activated" and t.activated_at is not None]


def ratios_to_baseline(updated: list[RolloutTarget], key: str) -> list[float]:
    """Each updated device's test-synthesis figure ``key`` over the one it measured before (its baseline)."""
    return [t.test[key] / t.baseline[key] for t in updated
            if t.test and t.baseline and t.test.get(key) and t.baseline.get(key)]


def cer_breach(targets: list[RolloutTarget], max_cer: float | None) -> str | None:
    """Any judged device whose test phrase the recogniser could not make out (one is enough: the same
    bundle speaks the same phrase everywhere, so a device over the bound is heard as the bundle)."""
    heard = [(cer, t.device_id) for t in targets if (cer := heard_cer(t)) is not None]
    if max_cer is None or not heard or max(heard)[0] <= max_cer:
        return None
    cer, device_id = max(heard)
    return (f"gate cer: the test phrase as {device_id} spoke it was heard with a character error rate of "
            f"{cer:.0%} > {max_cer:.0%} allowed (unintelligible)")


def job_outcomes(session: Session, updated: list[RolloutTarget]) -> tuple[int, int]:
    """Job attempts done and failed (for the model's sake) on each device since it activated."""
    since = {t.device_id: t.activated_at for t in updated}
    rows = session.exec(select(JobEvent.device_id, JobEvent.kind, JobEvent.detail, JobEvent.ts).where(
        col(JobEvent.device_id).in_(list(since)), col(JobEvent.kind).in_(("done", "attempt_failed")),
        JobEvent.ts >= min(since.values()))).all()
    ok = bad = 0
    for device_id, kind, detail, ts in rows:
        if ts < since[device_id]:
            continue
        if kind == "done":
            ok += 1
        elif (detail or {}).get("code") not in NOT_MODEL_ERRORS:
            bad += 1
    return ok, bad
