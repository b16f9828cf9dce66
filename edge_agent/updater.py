"""Carries out OtaCommands on the device: one at a time, idempotent by ``command_id``, resumable.

Install: mark the inactive slot ``writing`` (and the command pending) → download each file into it
with HTTP Range resume, checking size and sha256 → verify the bundle's signature and that it is the
model asked for → test synthesis with an engine built from that slot → switch (one rename of
slots.json) → the agent restarts itself on the new slot → "activated" once it runs there. Each step
is reported as an OtaReport. A restart at any point (a power cut) resumes the pending command: files
already complete are kept, a ``.part`` file continues from its length, and checks and the test run
again. See docs/updates.md; the download is ``ota_download``, the command and speech checks ``ota_checks``.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.ota_checks import UpdateFailed, check_command, speak_test_phrase
from edge_agent.ota_download import LinkRefused, Progress, fetch, file_url, sha256
from edge_agent.slots import SlotsState, SlotStore, other
from voicefleet import protocol as p
from voicefleet.files import fsync_dir, fsync_file

log = logging.getLogger(__name__)
# A refused link (HTTP 401/403: its signature expired while the device was off) waits this long for the
# command again with a fresh one; the control plane resends a command it has no answer to (rollouts.py).
LINK_WAIT_S = 600.0
SLOT_ENGINE = "student-onnx"  # what the slots hold: bundles the student engine loads
STEPS = ("received", "half", "downloaded", "verified", "tested", "switched", "activated", "marked_good")


class Updater:
    def __init__(self, slots: SlotStore, device_id: str, report: Callable[[p.OtaReport], None],
                 switched: Callable[[], None], *, pause_after: str | None = None, settle_s: float = 120.0,
                 link_wait_s: float = LINK_WAIT_S, engine_settings=None):
        """``report`` sends an OtaReport; ``switched`` restarts the agent on the newly active slot.
        ``pause_after`` (tests only) blocks the update for good after that step of STEPS, so a test
        can SIGKILL the agent there. ``settle_s``: how long an install waits for a trial slot to be
        marked good (or fall back) before it starts. ``engine_settings``: what the test synthesis
        builds its student with (the process's EngineSettings)."""
        if pause_after is not None and pause_after not in STEPS:
            raise ValueError(f"VOICEFLEET_OTA_PAUSE_AFTER must be one of {', '.join(STEPS)}")
        self.slots, self.device_id = slots, device_id
        self._report, self._switched = report, switched
        self.pause_after, self.settle_s, self.link_wait_s = pause_after, settle_s, link_wait_s
        self.engine_settings = engine_settings
        self._queue: queue.Queue[p.OtaCommand] = queue.Queue()
        self._current: str | None = None
        self._link: str | None = None  # the running command's newest base_url (a redelivery may refresh it)
        self._lock = threading.Lock()
        self._relinked = threading.Condition(self._lock)
        threading.Thread(target=self._work, name="updater", daemon=True).start()

    # -- intake ----------------------------------------------------------------------------

    def submit(self, cmd: p.OtaCommand) -> None:
        """A command from the control plane: done before → its last report again; running → its link
        refreshed; another one running → refused (one update at a time)."""
        state = self.slots.state()
        if done := state.finished.get(cmd.command_id):
            self._report(p.OtaReport.model_validate(done))
            return
        with self._lock:
            if self._current == cmd.command_id:
                if cmd.base_url and cmd.base_url != self._link:
                    self._link = cmd.base_url
                    self.slots.update(lambda s: _relink(s, cmd))  # a restart resumes with it too
                    self._relinked.notify_all()
                return
            if self._current is not None:
                self._send(cmd, "failed", error=p.ErrorInfo(
                    code="busy", text=f"update {self._current} is still running; send this one when it is done"))
                return
            self._current, self._link = cmd.command_id, cmd.base_url
        self._queue.put(cmd)

    def resume(self) -> None:
        """After a start: report a fall-back made at boot, and carry on with the pending command."""
        state = self.slots.state()
        if (fb := state.unreported) is not None:
            report = p.OtaReport(device_id=self.device_id, command_id=fb["command_id"], rollout_id=fb["rollout_id"],
                                 model_id=fb["model_id"], version=fb["version"], stage="rolled_back",
                                 error=p.ErrorInfo(code=fb["code"], text=fb["text"]), active=self.slots.active_model())
            self._report(report)
            self.slots.finish(report)
            self.slots.update(lambda s: setattr(s, "unreported", None))
        if state.pending is not None:
            self.submit(p.OtaCommand.model_validate(state.pending))

    # -- the worker ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            cmd = self._queue.get()
            try:
                self._run(cmd)
            except UpdateFailed as exc:
                log.warning("update %s failed: %s", cmd.command_id, exc)
                self._finish(cmd, "failed", error=p.ErrorInfo(code=exc.code, text=exc.text))
            except Exception as exc:  # a bug must not leave the device without its updater
                log.exception("update %s crashed", cmd.command_id)
                self._finish(cmd, "failed", error=p.ErrorInfo(code="internal", text=f"{type(exc).__name__}: {exc}"))
            finally:
                with self._lock:
                    self._current = self._link = None

    def _run(self, cmd: p.OtaCommand) -> None:
        state = self.slots.state()
        active = state.slots[state.active]
        if (active.model_id, active.version) == (cmd.model_id, cmd.version) and active.status != "bad":
            # running it already: after the restart that the switch caused, or a repeat
            self._finish(cmd, "activated" if cmd.op == "install" else "rolled_back")
            self.checkpoint("activated")
            return
        if cmd.op == "rollback":
            self._roll_back(cmd, state)
        else:
            self._install(cmd)

    def _install(self, cmd: p.OtaCommand) -> None:
        check_command(cmd)
        self._wait_settled()
        target = self._begin(cmd)
        self.checkpoint("received")
        self._download(cmd, target)
        self.checkpoint("downloaded")
        self._verify(cmd, target)
        self._send(cmd, "verified")
        self.checkpoint("verified")
        try:
            figures, said = speak_test_phrase(target, self.engine_settings)
        except UpdateFailed:
            self._set_status(target, "bad")
            raise
        self._send(cmd, "tested", test=figures, test_audio=said)
        self.checkpoint("tested")
        self._switch(target.name)
        self.checkpoint("switched")
        self._switched()

    def _roll_back(self, cmd: p.OtaCommand, state: SlotsState) -> None:
        back = state.slots.get(other(state.active))
        if back is None or back.status != "good" or (back.model_id, back.version) != (cmd.model_id, cmd.version):
            have = f"{back.model_id} {back.version} ({back.status})" if back else "nothing"
            raise UpdateFailed("no_such_version", f"cannot roll back to {cmd.model_id} {cmd.version}: the other "
                                                  f"slot holds {have}")
        self.slots.update(lambda s: _pend(s, cmd))
        self._switch(other(state.active), trial=False)
        self._switched()

    # -- steps -----------------------------------------------------------------------------

    def _wait_settled(self) -> None:
        """A new install overwrites the other slot: never while that slot is the fall-back of a trial."""
        deadline = time.monotonic() + self.settle_s
        while self.slots.on_trial():
            if time.monotonic() > deadline:
                raise UpdateFailed("trial_running", f"the model switched to last was not marked good within "
                                                    f"{self.settle_s:.0f}s; send the command again later")
            time.sleep(0.5)

    def _begin(self, cmd: p.OtaCommand) -> Path:
        """Mark the inactive slot ``writing`` (before touching a file), then clear what is not this bundle's;
        files of the same version being written before a restart are kept, to be resumed."""
        from edge_agent.slots import SlotRecord

        before = self.slots.state()
        slot = other(before.active)
        old = before.slots.get(slot)
        resuming = old is not None and old.status == "writing" and (old.model_id, old.version) == (cmd.model_id,
                                                                                                  cmd.version)

        def change(s: SlotsState) -> None:
            s.slots[slot] = SlotRecord(model_id=cmd.model_id, version=cmd.version, status="writing",
                                       command_id=cmd.command_id)
            _pend(s, cmd)

        self.slots.update(change)
        target = self.slots.path(slot)
        target.mkdir(parents=True, exist_ok=True)
        keep = {f.name for f in cmd.files} | {f"{f.name}.part" for f in cmd.files} if resuming else set()
        for file in target.iterdir():
            if file.name not in keep:
                shutil.rmtree(file) if file.is_dir() else file.unlink()
        return target

    def _download(self, cmd: p.OtaCommand, target: Path) -> None:
        total = sum(f.size for f in cmd.files)
        if shutil.disk_usage(target).free < total:
            raise UpdateFailed("no_space", f"{total} bytes needed in {target}, "
                                           f"{shutil.disk_usage(target).free} free")
        progress = Progress(lambda done: self._send(cmd, "downloading", bytes_done=done, bytes_total=total))
        progress.flush()  # the first report: downloading has begun
        for f in cmd.files:
            final = target / f.name
            if final.is_file() and (final.stat().st_size, sha256(final)) == (f.size, f.sha256):
                progress.add(f.size)
                continue
            part = target / f"{f.name}.part"
            for fresh in (False, True):  # a resumed file that does not hash right: once more from zero
                if fresh:
                    part.unlink(missing_ok=True)
                url = self._fetch(f, part, progress.add, self._half_hook(total, progress))
                digest = sha256(part)
                if digest == f.sha256:
                    break
                progress.add(-f.size)
            else:
                raise UpdateFailed("checksum_mismatch", f"{f.name} from {url}: sha256 {digest}, the command says "
                                                        f"{f.sha256}")
            fsync_file(part)
            part.rename(final)
        fsync_dir(target)
        progress.flush()

    def _fetch(self, f: p.OtaFile, part: Path, progress: Callable[[int], None], hook: Callable[[], None]) -> str:
        """``fetch`` from the newest link; a refused link waits for the command again with a fresh one."""
        while True:
            with self._lock:
                link = self._link or ""
            try:
                fetch(file_url(link, f.name), part, f.size, progress, hook)
                return file_url(link, f.name)
            except LinkRefused as exc:
                log.warning("%s; waiting up to %.0fs for a fresh link", exc.text, self.link_wait_s)
                with self._relinked:
                    if not self._relinked.wait_for(lambda old=link: self._link != old, self.link_wait_s):
                        raise UpdateFailed(exc.code, f"{exc.text}; no fresh link came within "
                                                     f"{self.link_wait_s:.0f}s") from exc

    def _half_hook(self, total: int, progress: Progress) -> Callable[[], None]:
        def hook() -> None:
            if self.pause_after == "half" and progress.done >= total // 2:
                self.checkpoint("half")
        return hook

    def _verify(self, cmd: p.OtaCommand, target: Path) -> None:
        from voicefleet.bundle import BundleError, trusted_keys_from_env, verify_bundle

        try:
            manifest = verify_bundle(target, trusted_keys_from_env()).manifest
        except BundleError as exc:
            self._set_status(target, "bad")
            raise UpdateFailed(exc.code, exc.text) from exc
        if (manifest.model_id, manifest.version) != (cmd.model_id, cmd.version):
            raise UpdateFailed("wrong_bundle", f"the files are {manifest.model_id} {manifest.version}, the command "
                                               f"asked for {cmd.model_id} {cmd.version}")
        if manifest.engine != SLOT_ENGINE:
            raise UpdateFailed("incompatible", f"the bundle is for engine {manifest.engine!r}; this agent's slots "
                                               f"hold {SLOT_ENGINE} bundles")

    def _switch(self, slot: str, *, trial: bool = True) -> None:
        def change(s: SlotsState) -> None:
            left = s.slots[s.active]
            if left.status == "trial":
                s.slots[s.active] = left.model_copy(update={"status": "bad"})  # rolled back before proving itself
            s.slots[slot] = s.slots[slot].model_copy(update={"status": "trial" if trial else "good"})
            s.active, s.boots = slot, 0

        self.slots.update(change)
        log.info("switched to slot %s", slot)

    def _set_status(self, target: Path, status: str) -> None:
        def change(s: SlotsState) -> None:
            s.slots[target.name] = s.slots[target.name].model_copy(update={"status": status})

        self.slots.update(change)

    # -- reports ---------------------------------------------------------------------------

    def _send(self, cmd: p.OtaCommand, stage: str, **fields) -> None:
        self._report(self._report_of(cmd, stage, **fields))

    def _report_of(self, cmd: p.OtaCommand, stage: str, **fields) -> p.OtaReport:
        return p.OtaReport(device_id=self.device_id, command_id=cmd.command_id, rollout_id=cmd.rollout_id,
                           model_id=cmd.model_id, version=cmd.version, stage=stage,
                           active=self.slots.active_model(), **fields)

    def _finish(self, cmd: p.OtaCommand, stage: str, **fields) -> None:
        """The final report, recorded before it is sent: whoever hears it finds the command no longer
        pending in the slots' state, and a redelivery gets the same report again."""
        report = self._report_of(cmd, stage, **fields)
        self.slots.finish(report)
        self._report(report)

    def checkpoint(self, step: str) -> None:
        """Where a test may stop the update for good (and SIGKILL the agent): see ``pause_after``."""
        if step != self.pause_after:
            return
        log.warning("update paused after step %s (VOICEFLEET_OTA_PAUSE_AFTER)", step)
        (self.slots.root / "paused").write_text(step)
        threading.Event().wait()


def _pend(s: SlotsState, cmd: p.OtaCommand) -> None:
    s.pending = cmd.model_dump(mode="json")


def _relink(s: SlotsState, cmd: p.OtaCommand) -> None:
    if s.pending and s.pending["command_id"] == cmd.command_id:
        s.pending["base_url"] = cmd.base_url
