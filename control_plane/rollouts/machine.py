"""The rollout state machine (overview: control_plane/rollouts/__init__.py): operators' requests,
device messages and the tick, all run on the dispatcher's thread inside its transactions."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from sqlmodel import Session, col, select

from control_plane.models import DeviceModel, Rollout, RolloutTarget
from control_plane.registry import Registry, ota_files
from control_plane.rollouts.gates import gate_breach
from control_plane.rollouts.listening import Listener, Phrase, Verdict, awaits_verdict
from control_plane.rollouts.plans import Plan, RolloutCreate, phases_of
from control_plane.rollouts.records import (
    add_event,
    get_rollout,
    online_ids,
    own_figures,
    record_model,
    set_state,
    set_target,
    targets_of,
    trusted_tags,
    version_figures,
)
from control_plane.rollouts.states import ACTIVE, DEFERRED, IN_FLIGHT, STAGE_STATE, UNDO, Publish, RolloutError
from control_plane.signed_urls import signed_query
from voicefleet import protocol as p
from voicefleet.ids import new_id, now

log = logging.getLogger(__name__)


def choose_targets(session: Session, spec: RolloutCreate) -> tuple[list[DeviceModel], dict[str, int], set[str]]:
    """The devices a rollout of ``spec`` reaches (by id), the phase of each, and which are online now;
    refuses a selector or canaries naming devices that do not run the model, and a selector that picks none.
    Creating a rollout and its preview both ask this."""
    fleet = [dm for dm in session.exec(select(DeviceModel).where(DeviceModel.model_id == spec.model_id)
                                       .order_by(DeviceModel.device_id)).all() if spec.selector.picks(dm)]
    if unknown := set(spec.selector.device_ids) - {dm.device_id for dm in fleet}:
        raise RolloutError("unknown_devices", f"devices {sorted(unknown)[:10]} do not report running {spec.model_id}")
    if unknown := set(spec.plan.canary_ids) - {dm.device_id for dm in fleet}:
        raise RolloutError("unknown_canaries",
                           f"canaries {sorted(unknown)[:10]} are not among the devices the selector picks")
    if not fleet:
        raise RolloutError("no_targets", f"no device running {spec.model_id} matches the selector")
    online = online_ids(session, [dm.device_id for dm in fleet])
    # Canaries are best taken from devices that are here now: online first, then by id.
    ids = sorted((dm.device_id for dm in fleet), key=lambda d: (d not in online, d))
    return fleet, phases_of(ids, spec.plan), online


def start_state(dm: DeviceModel, version: str) -> tuple[str, str | None]:
    """A target's state when its rollout starts, and why it is not pending."""
    if dm.version == version:
        return "activated", "already ran this version"
    if dm.pinned_version is not None:
        return "skipped", f"pinned to {dm.pinned_version}"
    return "pending", None


class Rollouts:
    """Every rollout's progress. Operators' requests are plain methods (``create``, ``pause``, ``resume``,
    ``abort``, ``rollback``, ``pin``) taking the dispatcher's session and publish list and keyword
    arguments; ``on_state`` and ``on_report`` take device messages; ``tick`` moves what can move."""

    def __init__(self, *, registry: Registry, api_url: str, url_secret: bytes, listener: Listener | None = None):
        self.registry = registry
        self.api_url = api_url
        self.url_secret = url_secret
        self.listener = listener  # judges test phrases (listening.py); None: they are not judged
        self._heard_enough: set[str] = set()  # rollouts with listen_to phrases kept already (saves a query)
        self.due = False  # something moved: tick at the end of this batch, not at the next housekeeping
        # Devices whose outstanding commands go out again at the next tick (same command_id: harmless),
        # because the command may never have left: a control plane killed between its commit and its
        # publish (all of them, after a start), or a device that was away and has just come back.
        self._resend: set[str] | None = None  # None: every device

    # -- operators' requests (run on the dispatcher thread, one typed command each) ----------

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
        fleet, phase, _ = choose_targets(session, spec)
        rollout = Rollout(model_id=spec.model_id, version=spec.version, selector=spec.selector.model_dump(),
                          plan=spec.plan.model_dump(), state="running", phase=0, phase_started_at=now(),
                          created_by=by)
        session.add(rollout)
        figures = version_figures(session, spec.model_id)
        for dm in fleet:
            target = RolloutTarget(rollout_id=rollout.id, device_id=dm.device_id, phase=phase[dm.device_id],
                                   from_version=dm.version,
                                   baseline=own_figures(dm) or figures.get(dm.version or ""))
            target.state, target.error = start_state(dm, spec.version)
            session.add(target)
        add_event(session, rollout, "created", detail={"targets": len(fleet), "by": by,
                                                       "phases": 1 + len(spec.plan.waves)})
        add_event(session, rollout, "phase_started", detail={"phase": 0, "name": "canary"})
        return rollout

    def pause(self, session: Session, publish: Publish, *, rollout_id: str, reason: str = "") -> Rollout:
        rollout = get_rollout(session, rollout_id, "running")
        set_state(session, rollout, "paused", reason or "paused by an operator")
        return rollout

    def resume(self, session: Session, publish: Publish, *, rollout_id: str) -> Rollout:
        rollout = get_rollout(session, rollout_id, "paused")
        set_state(session, rollout, "running", None, kind="resumed")
        return rollout

    def abort(self, session: Session, publish: Publish, *, rollout_id: str, reason: str = "") -> Rollout:
        """Send nothing more; updated devices stay as they are (roll back to undo them)."""
        rollout = get_rollout(session, rollout_id, "running", "paused")
        for t in targets_of(session, rollout.id, "pending"):
            set_target(session, rollout, t, "skipped", error="rollout aborted")
        set_state(session, rollout, "aborted", reason or "aborted by an operator")
        return rollout

    def rollback(self, session: Session, publish: Publish, *, rollout_id: str, reason: str = "") -> Rollout:
        rollout = get_rollout(session, rollout_id, "running", "paused", "completed", "aborted")
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
        if version is not None and dm.version != version and device_id in online_ids(session, [device_id]):
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
        dm.tags = trusted_tags(session, device_id, st.tags)
        if st.model is not None:
            record_model(dm, st.model)
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
            record_model(dm, r.active)
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
            if r.test_audio is not None and self._listens(session, rollout, target):
                self.listener.keep(Phrase(rollout.id, device_id, r.command_id), r.test_audio)
                target.test = {**target.test, "cer": None}  # awaited: the tick asks the listener
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
        set_target(session, rollout, target, state, error=error,
                     detail={"stage": r.stage, "test": r.test or None, "error": error})
        self.due = True

    def heard(self, session: Session, publish: Publish, *, verdict: Verdict) -> None:
        """The listener's verdict on a target's test phrase: its ``cer`` joins the test figures (the gate
        reads it at the next tick); a phrase that could not be judged halts the rollout, never passes."""
        phrase = verdict.phrase
        target = session.get(RolloutTarget, (phrase.rollout_id, phrase.device_id))
        if target is None or target.command_id != phrase.command_id or not awaits_verdict(target):
            return  # a verdict on a phrase the target no longer waits for
        rollout = session.get(Rollout, phrase.rollout_id)
        if verdict.error is not None:
            reason = f"cannot judge intelligibility: {verdict.error}"
            add_event(session, rollout, "device_unheard", phrase.device_id, {"error": verdict.error})
            if rollout.state in ("running", "paused"):
                self._undo(session, rollout, "halting", reason, kind="halted")
            return
        target.test = {**target.test, "cer": verdict.cer}
        session.add(target)
        dm = session.get(DeviceModel, phrase.device_id)
        if dm is not None and (dm.test or {}).get("version") == rollout.version:
            dm.test = {**dm.test, "cer": verdict.cer}
            session.add(dm)
        add_event(session, rollout, "device_heard", phrase.device_id,
                  {"cer": verdict.cer, "heard": verdict.heard, "command_id": phrase.command_id})

    def _listens(self, session: Session, rollout: Rollout, target: RolloutTarget) -> bool:
        """Whether this target's test phrase is judged: the first ``listen_to`` that report one."""
        gates = Plan.model_validate(rollout.plan).gates
        if self.listener is None or gates.max_cer is None or rollout.state not in ("running", "paused") \
                or rollout.id in self._heard_enough:
            return False
        session.flush()
        tests = session.exec(select(RolloutTarget.test).where(RolloutTarget.rollout_id == rollout.id,
                                                              RolloutTarget.device_id != target.device_id)).all()
        if sum("cer" in (t or {}) for t in tests) < gates.listen_to:
            return True
        self._heard_enough.add(rollout.id)
        return False

    # -- the tick ----------------------------------------------------------------------------

    def tick(self, session: Session, publish: Publish) -> None:
        """Move every active rollout as far as it can go now."""
        self.due = False
        session.flush()  # the dispatcher's session does not autoflush: queries must see this batch
        # Replicas on one PostgreSQL: each rollout is moved by one of them at a time (SQLite ignores this).
        active = select(Rollout).where(col(Rollout.state).in_(ACTIVE)).with_for_update(skip_locked=True)
        resend, self._resend = self._resend, set()
        for rollout in session.exec(active).all():
            targets = targets_of(session, rollout.id)
            online = online_ids(session, [t.device_id for t in targets])
            if rollout.state in ("running", "paused"):
                breach = gate_breach(session, rollout, targets)
                if breach:
                    self._undo(session, rollout, "halting", breach, kind="halted")
                    targets = targets_of(session, rollout.id)
            if rollout.state == "running":
                self._advance(session, rollout, targets, online, publish)
            if rollout.state in ("running", "paused") and self.listener is not None:
                for t in filter(awaits_verdict, targets):
                    self.listener.want(Phrase(rollout.id, t.device_id, t.command_id))
            self._send(session, rollout, targets, online, publish, resend)
            if rollout.state in ("halting", "rolling_back") and not any(
                    t.state in UNDO + IN_FLIGHT for t in targets):
                set_state(session, rollout, "halted" if rollout.state == "halting" else "rolled_back", rollout.reason,
                          kind="rollback_done")

    def _advance(self, session: Session, rollout: Rollout, targets: list[RolloutTarget], online: set[str],
                 publish: Publish) -> None:
        """Next phase once this one's online devices are updated and it has soaked; done after the last."""
        plan = Plan.model_validate(rollout.plan)
        last = len(plan.waves)
        while True:
            mine = [t for t in targets if t.phase <= rollout.phase]
            waiting = [t for t in mine if t.state in IN_FLIGHT or t.state == "pending" and t.device_id in online
                       or awaits_verdict(t)]
            if waiting:
                return
            t = now()
            if rollout.soak_until is None:
                rollout.soak_until = t + plan.soak_s
                add_event(session, rollout, "soak_started",
                          detail={"phase": rollout.phase, "until": rollout.soak_until,
                                  "updated": sum(x.state == "activated" for x in mine)})
            if t < rollout.soak_until:
                return
            if rollout.phase >= last:
                stragglers = [x.device_id for x in targets if x.state == "pending"]
                if stragglers:  # offline: they are updated when they come back
                    return
                set_state(session, rollout, "completed", None)
                return
            rollout.phase += 1
            rollout.phase_started_at, rollout.soak_until, rollout.updated_at = t, None, t
            session.add(rollout)
            add_event(session, rollout, "phase_started",
                      detail={"phase": rollout.phase, "name": f"wave {rollout.phase}",
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
                    set_target(session, rollout, target, "skipped", error=f"pinned to {dm.pinned_version}")
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
            add_event(session, rollout, "resent", target.device_id, {"command_id": target.command_id})
        else:
            set_target(session, rollout, target, "rolling_back" if undo else "sent",
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

    def _undo(self, session: Session, rollout: Rollout, state: str, reason: str, kind: str | None = None) -> None:
        """Stop, and roll back every device this rollout updated (offline ones when they return)."""
        set_state(session, rollout, state, reason, kind=kind)
        for t in targets_of(session, rollout.id):
            if t.state == "pending":
                set_target(session, rollout, t, "skipped", error=reason)
            elif t.state == "activated" and t.from_version and t.command_id:
                set_target(session, rollout, t, "rollback")
        log.warning("rollout %s of %s %s: %s", rollout.id, rollout.model_id, state, reason)


def files_path(model_id: str, version: str) -> str:
    return f"/v1/models/{model_id}/versions/{version}/files"
