"""Staged rollouts of model bundles: the state machine (docs/rollouts.md).

A rollout sends one registry version to the devices its selector picks, phase by phase: a canary
set, then waves that each bring the updated share of the targets up to a percentage. Each phase
sends at most ``max_in_flight`` installs at a time, to online devices only; when every online
device of the phase is updated, the phase soaks, and the next one starts once the soak is over
with every gate still green. Gates are evaluated on the devices already updated, all the time:
install/activation failures, test-synthesis failures, the job error rate since activation, and the
test synthesis' RTF and first-chunk latency against what the same device measured for the
version it ran before. A breach halts the rollout and rolls every updated device back.

Everything lives in the database (``Rollout``, ``RolloutTarget``, ``RolloutEvent``,
``DeviceModel``) and every change runs on the dispatcher's thread, inside its transactions:
``on_state`` and ``on_report`` for device messages, ``command`` for operators' requests, ``tick``
from its housekeeping. Commands go out only after the transaction that decided them committed
(appended to the dispatcher's publish list), so a control plane that restarts simply carries on:
a command it sent whose report never came is sent again (same ``command_id``: harmless).
Devices that are offline keep their place and are updated when they come back; a rollout waits
in its last phase for them (abort stops the waiting).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import Session, col, select

from control_plane.models import Device, DeviceModel, JobEvent, MqttUser, Rollout, RolloutEvent, RolloutTarget
from control_plane.registry import Registry, ota_files
from control_plane.signed_urls import signed_query
from voicefleet import protocol as p
from voicefleet.errors import CodedError
from voicefleet.ids import new_id, now

log = logging.getLogger(__name__)

ACTIVE = ("running", "paused", "halting", "rolling_back")  # the tick looks only at these
IN_FLIGHT = ("sent", "downloading", "verified", "tested")  # an install the device is working on
UNDO = ("rollback", "rolling_back")  # to be rolled back / rollback sent
STAGE_STATE = {"downloading": "downloading", "verified": "verified", "tested": "tested", "activated": "activated",
               "failed": "failed", "rolled_back": "rolled_back"}
# Refusals that say "not now" or "not this link" rather than "this version is bad": the install is
# sent again later (with a fresh signed link).
DEFERRED = ("busy", "trial_running", "link_expired", "download_failed")
# Job failures that say nothing about the model (the device went away, a lease ran out).
NOT_MODEL_ERRORS = ("device_lost", "lease_expired", "audio_incomplete")

Publish = list[tuple[str, bytes]]


class RolloutError(CodedError):
    """A request the rollouts refuse: ``code`` for programs, ``text`` for people."""


# ----------------------------------------------------------------------------------- plans


class Gates(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_failures: int = Field(default=0, ge=0)  # devices whose install, activation or test synthesis failed
    max_error_rate: float = Field(default=0.2, ge=0, le=1)  # job attempts failed on updated devices
    min_jobs: int = Field(default=5, ge=1)  # before the error rate counts
    max_rtf_ratio: float = Field(default=1.5, gt=0)  # test-synthesis RTF, new / previous version (median)
    max_first_chunk_ratio: float = Field(default=1.5, gt=0)  # test-synthesis first chunk, new / previous


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


# ------------------------------------------------------------------------------ the machine


class Rollouts:
    def __init__(self, *, registry: Registry, api_url: str, url_secret: bytes):
        self.registry = registry
        self.api_url = api_url
        self.url_secret = url_secret
        self.due = False  # something moved: tick at the end of this batch, not at the next housekeeping
        # Devices whose outstanding commands go out again at the next tick (same command_id: harmless),
        # because the command may never have left: a control plane killed between its commit and its
        # publish (all of them, after a start), or a device that was away and has just come back.
        self._resend: set[str] | None = None  # None: every device

    # -- operators' requests (run on the dispatcher thread through ``command``) --------------

    def command(self, session: Session, publish: Publish, op: str, **kw) -> Any:
        handler: Callable = {"create": self.create, "pause": self.pause, "resume": self.resume,
                             "abort": self.abort, "rollback": self.rollback, "pin": self.pin}[op]
        result = handler(session, publish, **kw)
        self.due = True
        return result

    def create(self, session: Session, publish: Publish, *, spec: RolloutCreate, by: str | None = None) -> Rollout:
        row = self.registry.get(session, spec.model_id, spec.version)
        if row is None:
            raise RolloutError("unknown_version",
                               f"no version {spec.version!r} of {spec.model_id!r} in the registry: upload it")
        busy = session.exec(select(Rollout).where(Rollout.model_id == spec.model_id,
                                                  col(Rollout.state).in_(ACTIVE))).first()
        if busy is not None:
            raise RolloutError("rollout_active", f"rollout {busy.id} of {spec.model_id} is {busy.state}; a device "
                               "takes one rollout at a time: abort it or wait until it ends")
        fleet = [dm for dm in session.exec(select(DeviceModel).where(DeviceModel.model_id == spec.model_id)
                                           .order_by(DeviceModel.device_id)).all() if spec.selector.picks(dm)]
        if unknown := set(spec.selector.device_ids) - {dm.device_id for dm in fleet}:
            raise RolloutError("unknown_devices",
                               f"devices {sorted(unknown)[:10]} do not report running {spec.model_id}")
        if unknown := set(spec.plan.canary_ids) - {dm.device_id for dm in fleet}:
            raise RolloutError("unknown_canaries",
                               f"canaries {sorted(unknown)[:10]} are not among the devices the selector picks")
        if not fleet:
            raise RolloutError("no_targets", f"no device running {spec.model_id} matches the selector")
        online = _online(session, [dm.device_id for dm in fleet])
        # Canaries are best taken from devices that are here now: online first, then by id.
        ids = sorted((dm.device_id for dm in fleet), key=lambda d: (d not in online, d))
        phase = phases_of(ids, spec.plan)
        rollout = Rollout(model_id=spec.model_id, version=spec.version, selector=spec.selector.model_dump(),
                          plan=spec.plan.model_dump(), state="running", phase=0, phase_started_at=now(),
                          created_by=by)
        session.add(rollout)
        figures = _version_figures(session, spec.model_id)
        for dm in fleet:
            target = RolloutTarget(rollout_id=rollout.id, device_id=dm.device_id, phase=phase[dm.device_id],
                                   from_version=dm.version,
                                   baseline=_own_figures(dm) or figures.get(dm.version or ""))
            if dm.version == spec.version:
                target.state, target.error = "activated", "already ran this version"
            elif dm.pinned_version is not None:
                target.state, target.error = "skipped", f"pinned to {dm.pinned_version}"
            session.add(target)
        _event(session, rollout, "created", detail={"targets": len(fleet), "by": by,
                                                    "phases": 1 + len(spec.plan.waves)})
        _event(session, rollout, "phase_started", detail={"phase": 0, "name": "canary"})
        return rollout

    def pause(self, session: Session, publish: Publish, *, rollout_id: str, reason: str = "") -> Rollout:
        rollout = self._get(session, rollout_id, "running")
        self._set(session, rollout, "paused", reason or "paused by an operator")
        return rollout

    def resume(self, session: Session, publish: Publish, *, rollout_id: str) -> Rollout:
        rollout = self._get(session, rollout_id, "paused")
        self._set(session, rollout, "running", None, kind="resumed")
        return rollout

    def abort(self, session: Session, publish: Publish, *, rollout_id: str, reason: str = "") -> Rollout:
        """Send nothing more; updated devices stay as they are (roll back to undo them)."""
        rollout = self._get(session, rollout_id, "running", "paused")
        for t in self._targets(session, rollout.id, "pending"):
            self._target(session, rollout, t, "skipped", error="rollout aborted")
        self._set(session, rollout, "aborted", reason or "aborted by an operator")
        return rollout

    def rollback(self, session: Session, publish: Publish, *, rollout_id: str, reason: str = "") -> Rollout:
        rollout = self._get(session, rollout_id, "running", "paused", "completed", "aborted")
        self._undo(session, rollout, "rolling_back", reason or "rolled back by an operator")
        return rollout

    def pin(self, session: Session, publish: Publish, *, device_id: str, model_id: str,
            version: str | None) -> DeviceModel:
        """Keep a device on ``version`` (installing it now if it runs another), or unpin it (None)."""
        dm = session.get(DeviceModel, device_id)
        if dm is None or dm.model_id != model_id:
            raise RolloutError("unknown_device", f"device {device_id!r} does not report running {model_id!r}")
        if version not in (None, dm.version) and self.registry.get(session, dm.model_id, version) is None:
            raise RolloutError("unknown_version",
                               f"no version {version!r} of {dm.model_id!r} in the registry (nor on the device)")
        dm.pinned_version = version
        dm.updated_at = now()
        session.add(dm)
        session.flush()
        for t in session.exec(select(RolloutTarget).join(Rollout, Rollout.id == RolloutTarget.rollout_id).where(
                RolloutTarget.device_id == device_id, RolloutTarget.state == "pending",
                col(Rollout.state).in_(ACTIVE))).all():
            t.state, t.error, t.updated_at = "skipped", f"pinned to {version}", now()
            session.add(t)
        if version is not None and dm.version != version and device_id in _online(session, [device_id]):
            self._install(publish, dm.model_id, version, device_id, command_id=new_id(), rollout_id=None,
                          session=session)
        return dm

    # -- device messages ---------------------------------------------------------------------

    def on_state(self, session: Session, device_id: str, st: p.DeviceState, publish: Publish) -> None:
        """Record what the device runs and its tags; a pinned device that came back on another
        version is sent its pin."""
        if st.status == "offline":
            self.due = True  # its in-flight work may now block a phase: let the tick look
            return
        if self._resend is not None and st.status == "online":
            self._resend.add(device_id)
        if st.model is None and not st.tags:
            return
        dm = session.get(DeviceModel, device_id) or DeviceModel(device_id=device_id)
        dm.tags = _trusted_tags(session, device_id, st.tags)
        if st.model is not None:
            self._record_model(dm, st.model)
        dm.updated_at = now()
        session.add(dm)
        if dm.pinned_version and dm.version != dm.pinned_version and self.registry.get(session, dm.model_id,
                                                                                       dm.pinned_version):
            self._install(publish, dm.model_id, dm.pinned_version, device_id, command_id=new_id(), rollout_id=None,
                          session=session)
        self.due = True

    def on_report(self, session: Session, device_id: str, r: p.OtaReport, publish: Publish) -> None:
        if r.device_id != device_id:
            log.warning("dropped an OTA report from %s claiming to be %s", device_id, r.device_id)
            return
        dm = session.get(DeviceModel, device_id) or DeviceModel(device_id=device_id)
        if r.active is not None:
            self._record_model(dm, r.active)
        if r.stage == "tested" and r.test:
            dm.test = {"version": r.version, **r.test}
        dm.updated_at = now()
        session.add(dm)
        target = session.get(RolloutTarget, (r.rollout_id, device_id)) if r.rollout_id else None
        if target is None or target.command_id != r.command_id:
            return  # a pin's install, or a report of a command this target no longer waits for
        rollout = session.get(Rollout, r.rollout_id)
        state = STAGE_STATE[r.stage]
        if state == target.state or (target.state in ("activated", "failed", "rolled_back") and state in IN_FLIGHT):
            return  # a redelivery, or progress that arrives after the outcome
        if r.stage == "tested":
            target.test = dict(r.test)
        if r.stage == "activated":
            target.activated_at = r.ts
            if rollout.state not in ("running", "paused", "completed", "aborted"):
                state = "rollback"  # it finished installing after the rollout halted: undo it too
        if r.stage == "failed" and r.error and r.error.code in DEFERRED and target.state in IN_FLIGHT:
            state = "pending"  # the device is busy with another update: try again in a while
        elif r.stage in ("failed", "rolled_back") and target.state in UNDO:
            state = "rolled_back" if r.active is None or r.active.version == target.from_version else "failed"
        elif r.stage == "rolled_back":
            state = "failed"  # it fell back on its own: the install did not hold
        error = f"{r.error.code}: {r.error.text}" if r.error else None
        self._target(session, rollout, target, state, error=error,
                     detail={"stage": r.stage, "test": r.test or None, "error": error})
        self.due = True

    # -- the tick ----------------------------------------------------------------------------

    def tick(self, session: Session, publish: Publish) -> None:
        """Move every active rollout as far as it can go now."""
        self.due = False
        session.flush()  # the dispatcher's session does not autoflush: queries must see this batch
        # Replicas on one PostgreSQL: each rollout is moved by one of them at a time (SQLite ignores this).
        active = select(Rollout).where(col(Rollout.state).in_(ACTIVE)).with_for_update(skip_locked=True)
        resend, self._resend = self._resend, set()
        for rollout in session.exec(active).all():
            targets = self._targets(session, rollout.id)
            online = _online(session, [t.device_id for t in targets])
            if rollout.state in ("running", "paused"):
                breach = self._breach(session, rollout, targets)
                if breach:
                    self._undo(session, rollout, "halting", breach, kind="halted")
                    targets = self._targets(session, rollout.id)
            if rollout.state == "running":
                self._advance(session, rollout, targets, online, publish)
            self._send(session, rollout, targets, online, publish, resend)
            if rollout.state in ("halting", "rolling_back") and not any(
                    t.state in UNDO + IN_FLIGHT for t in targets):
                self._set(session, rollout, "halted" if rollout.state == "halting" else "rolled_back", rollout.reason,
                          kind="rollback_done")

    def _advance(self, session: Session, rollout: Rollout, targets: list[RolloutTarget], online: set[str],
                 publish: Publish) -> None:
        """Next phase once this one's online devices are updated and it has soaked; done after the last."""
        plan = Plan.model_validate(rollout.plan)
        last = len(plan.waves)
        while True:
            mine = [t for t in targets if t.phase <= rollout.phase]
            waiting = [t for t in mine if t.state in IN_FLIGHT or t.state == "pending" and t.device_id in online]
            if waiting:
                return
            t = now()
            if rollout.soak_until is None:
                rollout.soak_until = t + plan.soak_s
                _event(session, rollout, "soak_started", detail={"phase": rollout.phase, "until": rollout.soak_until,
                                                                 "updated": sum(x.state == "activated" for x in mine)})
            if t < rollout.soak_until:
                return
            if rollout.phase >= last:
                stragglers = [x.device_id for x in targets if x.state == "pending"]
                if stragglers:  # offline: they are updated when they come back
                    return
                self._set(session, rollout, "completed", None)
                return
            rollout.phase += 1
            rollout.phase_started_at, rollout.soak_until, rollout.updated_at = t, None, t
            session.add(rollout)
            _event(session, rollout, "phase_started", detail={"phase": rollout.phase, "name": f"wave {rollout.phase}",
                                                              "percent": plan.waves[rollout.phase - 1]})

    def _send(self, session: Session, rollout: Rollout, targets: list[RolloutTarget], online: set[str],
              publish: Publish, resend: set[str] | None = frozenset()) -> None:
        """Installs for this phase's pending online devices up to the in-flight limit, rollbacks where due,
        and again any command whose report has not come within the timeout."""
        plan = Plan.model_validate(rollout.plan)
        t = now()
        for target in targets:  # repeats first: they hold in-flight places already
            stale = target.sent_at is not None and (t - target.sent_at > plan.command_timeout_s or resend is None
                                                    or target.device_id in resend)
            if target.device_id in online and stale and target.state in IN_FLIGHT + ("rolling_back",):
                self._command(session, rollout, target, publish, again=True)
        for target in targets:
            if target.state == "rollback" and target.device_id in online:
                self._command(session, rollout, target, publish)
        if rollout.state not in ("running", "completed"):
            return
        room = plan.max_in_flight - sum(x.state in IN_FLIGHT for x in targets)
        for target in targets:
            if room <= 0:
                return
            deferred = target.sent_at is not None and t - target.sent_at < plan.retry_s
            if target.state == "pending" and target.phase <= rollout.phase and target.device_id in online \
                    and not deferred:
                dm = session.get(DeviceModel, target.device_id)
                if dm is not None and dm.pinned_version is not None:
                    self._target(session, rollout, target, "skipped", error=f"pinned to {dm.pinned_version}")
                    continue
                self._command(session, rollout, target, publish)
                room -= 1

    def _command(self, session: Session, rollout: Rollout, target: RolloutTarget, publish: Publish,
                 again: bool = False) -> None:
        undo = target.state in UNDO
        if not again:
            target.command_id = new_id()
        if undo:
            cmd = p.OtaCommand(op="rollback", command_id=target.command_id, rollout_id=rollout.id,
                               model_id=rollout.model_id, version=target.from_version or "")
            publish.append((p.device_topic(target.device_id, "ota"), p.encode(cmd)))
        else:
            self._install(publish, rollout.model_id, rollout.version, target.device_id, command_id=target.command_id,
                          rollout_id=rollout.id, session=session)
        target.sent_at = now()
        if again:
            session.add(target)
            _event(session, rollout, "resent", target.device_id, {"command_id": target.command_id})
        else:
            self._target(session, rollout, target, "rolling_back" if undo else "sent",
                         detail={"command_id": target.command_id})

    def _install(self, publish: Publish, model_id: str, version: str, device_id: str, *, command_id: str,
                 rollout_id: str | None, session: Session) -> None:
        row = self.registry.get(session, model_id, version)
        cmd = p.OtaCommand(op="install", command_id=command_id, rollout_id=rollout_id, model_id=model_id,
                           version=version, base_url=self.files_url(model_id, version), files=ota_files(row))
        publish.append((p.device_topic(device_id, "ota"), p.encode(cmd)))

    def files_url(self, model_id: str, version: str) -> str:
        """Where a device fetches ``<name>``: the signature covers the version's files folder."""
        q = dict(parse_qsl(signed_query(self.url_secret, files_path(model_id, version))))
        return f"{self.api_url}/v1/models/{model_id}/versions/{version}/signed/{q['exp']}/{q['sig']}"

    # -- gates -------------------------------------------------------------------------------

    def _breach(self, session: Session, rollout: Rollout, targets: list[RolloutTarget]) -> str | None:
        """Why the updated devices say this version must not go further, or None."""
        gates = Plan.model_validate(rollout.plan).gates
        failed = [t for t in targets if t.state == "failed"]
        if len(failed) > gates.max_failures:
            tests = sum("test" in (t.error or "").split(":")[0] for t in failed)
            what = f"test synthesis failed on {tests} device(s)" if tests else "install/activation failed"
            ids = ", ".join(t.device_id for t in failed[:5])
            return f"gate failures: {what}, {len(failed)} failed > {gates.max_failures} allowed ({ids})"
        updated = [t for t in targets if t.state == "activated" and t.activated_at is not None]
        if not updated:
            return None
        ok, bad = self._job_outcomes(session, updated)
        if ok + bad >= gates.min_jobs and bad / (ok + bad) > gates.max_error_rate:
            return f"gate error_rate: {bad} of {ok + bad} jobs failed on updated devices > {gates.max_error_rate:.0%}"
        for key, limit in (("rtf", gates.max_rtf_ratio), ("first_chunk_s", gates.max_first_chunk_ratio)):
            ratios = [t.test[key] / t.baseline[key] for t in updated
                      if t.test and t.baseline and t.test.get(key) and t.baseline.get(key)]
            if ratios and statistics.median(ratios) > limit:
                return (f"gate {key}: test synthesis {statistics.median(ratios):.2f}x the previous version's "
                        f"(median of {len(ratios)} device(s)) > {limit:g}x")
        return None

    @staticmethod
    def _job_outcomes(session: Session, updated: list[RolloutTarget]) -> tuple[int, int]:
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

    # -- helpers -----------------------------------------------------------------------------

    def _undo(self, session: Session, rollout: Rollout, state: str, reason: str, kind: str | None = None) -> None:
        """Stop, and roll back every device this rollout updated (offline ones when they return)."""
        self._set(session, rollout, state, reason, kind=kind)
        for t in self._targets(session, rollout.id):
            if t.state == "pending":
                self._target(session, rollout, t, "skipped", error=reason)
            elif t.state == "activated" and t.from_version and t.command_id:
                self._target(session, rollout, t, "rollback")
        log.warning("rollout %s of %s %s: %s", rollout.id, rollout.model_id, state, reason)

    @staticmethod
    def _record_model(dm: DeviceModel, active: p.ActiveModel) -> None:
        if dm.version is not None and active.version != dm.version and (dm.test or {}).get("version") != active.version:
            dm.test = None  # figures belong to the version they were measured on
        dm.model_id, dm.version, dm.slot, dm.previous_version = (active.model_id, active.version, active.slot,
                                                                 active.previous_version)

    @staticmethod
    def _get(session: Session, rollout_id: str, *states: str) -> Rollout:
        rollout = session.get(Rollout, rollout_id)
        if rollout is None:
            raise RolloutError("unknown_rollout", f"no rollout {rollout_id!r}")
        if rollout.state not in states:
            raise RolloutError("wrong_state",
                               f"rollout {rollout_id} is {rollout.state}; this needs it {' or '.join(states)}")
        return rollout

    @staticmethod
    def _targets(session: Session, rollout_id: str, state: str | None = None) -> list[RolloutTarget]:
        session.flush()
        query = select(RolloutTarget).where(RolloutTarget.rollout_id == rollout_id)
        if state is not None:
            query = query.where(RolloutTarget.state == state)
        return list(session.exec(query.order_by(RolloutTarget.phase, RolloutTarget.device_id)).all())

    @staticmethod
    def _set(session: Session, rollout: Rollout, state: str, reason: str | None, kind: str | None = None) -> None:
        rollout.state, rollout.reason, rollout.updated_at = state, reason, now()
        session.add(rollout)
        _event(session, rollout, kind or state, detail={"state": state, "reason": reason})

    @staticmethod
    def _target(session: Session, rollout: Rollout, target: RolloutTarget, state: str, *, error: str | None = None,
                detail: dict | None = None) -> None:
        target.state, target.updated_at = state, now()
        if error is not None:
            target.error = error
        session.add(target)
        _event(session, rollout, f"device_{state}", target.device_id, detail)


def files_path(model_id: str, version: str) -> str:
    return f"/v1/models/{model_id}/versions/{version}/files"


def _online(session: Session, device_ids: list[str]) -> set[str]:
    if not device_ids:
        return set()
    session.flush()
    return set(session.exec(select(Device.id).where(col(Device.id).in_(device_ids), Device.status == "online")).all())


def _own_figures(dm: DeviceModel) -> dict | None:
    """The test figures the device measured for the version it runs, if it did."""
    return dm.test if dm.test and dm.test.get("version") == dm.version else None


def _version_figures(session: Session, model_id: str) -> dict[str, dict[str, float]]:
    """Per version, the median test-synthesis figures its devices measured: a baseline for devices
    that never measured their own."""
    by_version: dict[str, list[dict]] = {}
    for dm in session.exec(select(DeviceModel).where(DeviceModel.model_id == model_id)).all():
        if _own_figures(dm):
            by_version.setdefault(dm.version, []).append(dm.test)
    return {v: {k: statistics.median(f[k] for f in tests if isinstance(f.get(k), int | float))
                for k in ("rtf", "first_chunk_s") if any(isinstance(f.get(k), int | float) for f in tests)}
            for v, tests in by_version.items()}


def _event(session: Session, rollout: Rollout, kind: str, device_id: str | None = None,
           detail: dict | None = None) -> None:
    session.add(RolloutEvent(rollout_id=rollout.id, kind=kind, device_id=device_id, detail=detail))


def _trusted_tags(session: Session, device_id: str, reported: list[str]) -> list[str]:
    """An enrolled device's tags are the ones an admin gave it at enrolment (a device must not tag
    itself into another customer's rollout); only a device on an open broker reports its own."""
    login = session.get(MqttUser, device_id)
    if login is not None and login.kind == "device":
        return list(login.tags)
    return list(reported)
