"""Carries out OtaCommands on the device: one at a time, idempotent by ``command_id``, resumable.

Install: mark the inactive slot ``writing`` (and the command pending) → download each file into it
with HTTP Range resume, checking size and sha256 → verify the bundle's signature and that it is the
model asked for → test synthesis with an engine built from that slot → switch (one rename of
slots.json) → the agent restarts itself on the new slot → "activated" once it runs there. Each step
is reported as an OtaReport. A restart at any point (a power cut) resumes the pending command: files
already complete are kept, a ``.part`` file continues from its length, and checks and the test run
again. See docs/updates.md.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np

from edge_agent.slots import SlotsState, SlotStore, other
from voicefleet import protocol as p
from voicefleet.files import fsync_dir, fsync_file

log = logging.getLogger(__name__)
BLOCK = 64 * 1024
FETCH_TRIES = 6  # per file; each try continues from what the last one wrote
FETCH_TIMEOUT_S = 30.0
PROGRESS_EVERY_S = 0.25
# A refused link (HTTP 401/403: its signature expired while the device was off) waits this long for the
# command again with a fresh one; the control plane resends a command it has no answer to (rollouts.py).
LINK_WAIT_S = 600.0
SLOT_ENGINE = "student-onnx"  # what the slots hold: bundles the student engine loads
TEST_TEXT = "今天下午三点提醒我开会，请准备好材料。"
# Test synthesis: seconds of audio per Chinese character (Mandarin runs near 0.2-0.3), the quietest
# RMS allowed, and the share of full-scale samples allowed (NaN/inf come out as zeros or full scale).
SECONDS_PER_CHAR = (0.06, 0.8)
MIN_RMS_DBFS = -45.0
MAX_FULL_SCALE = 0.01
STEPS = ("received", "half", "downloaded", "verified", "tested", "switched", "activated", "marked_good")


class UpdateFailed(Exception):
    def __init__(self, code: str, text: str):
        super().__init__(f"{code}: {text}")
        self.code, self.text = code, text


class LinkRefused(UpdateFailed):
    def __init__(self, text: str):
        super().__init__("link_expired", text)


def file_url(base_url: str, name: str) -> str:
    """``{base_url}/{name}``, the name appended to the path; a signed query string stays as it is."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{quote(name)}"))


class Updater:
    def __init__(self, slots: SlotStore, device_id: str, report: Callable[[p.OtaReport], None],
                 switched: Callable[[], None], *, pause_after: str | None = None, settle_s: float = 120.0,
                 link_wait_s: float = LINK_WAIT_S):
        """``report`` sends an OtaReport; ``switched`` restarts the agent on the newly active slot.
        ``pause_after`` (tests only) blocks the update for good after that step of STEPS, so a test
        can SIGKILL the agent there. ``settle_s``: how long an install waits for a trial slot to be
        marked good (or fall back) before it starts."""
        if pause_after is not None and pause_after not in STEPS:
            raise ValueError(f"VOICEFLEET_OTA_PAUSE_AFTER must be one of {', '.join(STEPS)}")
        self.slots, self.device_id = slots, device_id
        self._report, self._switched = report, switched
        self.pause_after, self.settle_s, self.link_wait_s = pause_after, settle_s, link_wait_s
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
        _check_command(cmd)
        self._wait_settled()
        target = self._begin(cmd)
        self.checkpoint("received")
        self._download(cmd, target)
        self.checkpoint("downloaded")
        self._verify(cmd, target)
        self._send(cmd, "verified")
        self.checkpoint("verified")
        try:
            figures = speak_test_phrase(target)
        except UpdateFailed:
            self._set_status(target, "bad")
            raise
        self._send(cmd, "tested", test=figures)
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
        progress = _Progress(lambda done: self._send(cmd, "downloading", bytes_done=done, bytes_total=total))
        progress.flush()  # the first report: downloading has begun
        for f in cmd.files:
            final = target / f.name
            if final.is_file() and (final.stat().st_size, _sha256(final)) == (f.size, f.sha256):
                progress.add(f.size)
                continue
            part = target / f"{f.name}.part"
            for fresh in (False, True):  # a resumed file that does not hash right: once more from zero
                if fresh:
                    part.unlink(missing_ok=True)
                url = self._fetch(f, part, progress.add, self._half_hook(total, progress))
                digest = _sha256(part)
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

    def _half_hook(self, total: int, progress: _Progress) -> Callable[[], None]:
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

    def _send(self, cmd: p.OtaCommand, stage: str, **fields) -> p.OtaReport:
        report = p.OtaReport(device_id=self.device_id, command_id=cmd.command_id, rollout_id=cmd.rollout_id,
                             model_id=cmd.model_id, version=cmd.version, stage=stage,
                             active=self.slots.active_model(), **fields)
        self._report(report)
        return report

    def _finish(self, cmd: p.OtaCommand, stage: str, **fields) -> None:
        self.slots.finish(self._send(cmd, stage, **fields))

    def checkpoint(self, step: str) -> None:
        """Where a test may stop the update for good (and SIGKILL the agent): see ``pause_after``."""
        if step != self.pause_after:
            return
        log.warning("update paused after step %s (VOICEFLEET_OTA_PAUSE_AFTER)", step)
        (self.slots.root / "paused").write_text(step)
        threading.Event().wait()


class _Progress:
    """Bytes done, reported a few times a second at most (and first and last)."""

    def __init__(self, send: Callable[[int], None]):
        self.send, self.done, self._last = send, 0, 0.0

    def add(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self._last >= PROGRESS_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        self.send(self.done)


def fetch(url: str, part: Path, size: int, progress: Callable[[int], None],
          after_block: Callable[[], None] = lambda: None) -> None:
    """Get ``url`` into ``part`` until it holds ``size`` bytes, continuing from its length (HTTP Range)
    after a cut connection, a restart or a power cut. Errors a retry cannot fix fail at once."""
    for attempt in range(FETCH_TRIES):
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            progress(-have)
            have = 0
        if have == size:
            return
        if attempt:
            time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 (control plane URL)
                if have and resp.status != 206:  # the server ignored Range: start over
                    progress(-have)
                    have = 0
                with open(part, "ab" if have else "wb", buffering=0) as out:
                    while have < size and (block := resp.read(min(BLOCK, size - have))):
                        out.write(block)
                        have += len(block)
                        progress(len(block))
                        after_block()
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise LinkRefused(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            if exc.code not in (408, 429) and exc.code < 500:
                raise UpdateFailed("download_failed", f"{url}: HTTP {exc.code} {exc.reason}") from exc
            log.warning("%s: HTTP %s, retrying", url, exc.code)
        except (OSError, ValueError) as exc:  # refused, reset, timed out, cut short (http.client's errors)
            log.warning("%s: %s after %d bytes, resuming", url, exc, have)
    have = part.stat().st_size if part.exists() else 0
    if have != size:
        raise UpdateFailed("download_failed", f"{url}: {FETCH_TRIES} tries ended at {have} of {size} bytes")


def speak_test_phrase(slot: Path) -> dict[str, float]:
    """Speak TEST_TEXT with a student engine built from ``slot``; its figures, or UpdateFailed why not."""
    from edge_agent.engines.base import EngineError, SynthesisRequest
    from edge_agent.engines.student import StudentEngine

    try:
        engine = StudentEngine(bundle=slot)
        t0 = time.perf_counter()
        first, chunks = None, []
        for pcm in engine.synthesize(SynthesisRequest(text=TEST_TEXT)):
            first = first if first is not None else time.perf_counter() - t0
            chunks.append(pcm)
        synth_s = time.perf_counter() - t0
    except EngineError as exc:
        raise UpdateFailed("test_failed", f"the new model could not speak: {exc.text}") from exc
    audio = np.frombuffer(b"".join(chunks), "<i2")
    if problem := audio_problem(audio, engine.sample_rate, TEST_TEXT):
        raise UpdateFailed("test_failed", f"the new model's test phrase {problem}")
    audio_s = len(audio) / engine.sample_rate
    return {"rtf": round(synth_s / audio_s, 5), "first_chunk_s": round(first or 0.0, 5), "audio_s": round(audio_s, 3)}


def audio_problem(audio: np.ndarray, sample_rate: int, text: str) -> str | None:
    """What is wrong with int16 ``audio`` as speech of ``text`` (a phrase), or None."""
    if audio.size == 0:
        return "is empty"
    chars = sum(1 for c in text if "\u4e00" <= c <= "\u9fff") or len(text)
    seconds, (lo, hi) = audio.size / sample_rate, SECONDS_PER_CHAR
    if not lo * chars <= seconds <= hi * chars:
        return f"lasts {seconds:.2f}s for {chars} characters (expected {lo * chars:.1f}-{hi * chars:.1f}s)"
    full = float(np.mean(np.abs(audio.astype(np.int32)) >= 32767))
    if full > MAX_FULL_SCALE:
        return f"has {full:.0%} of its samples at full scale (clipped, or not finite before conversion)"
    rms = float(np.sqrt(np.mean((audio / 32768.0) ** 2)))
    dbfs = 20 * np.log10(rms) if rms > 0 else -np.inf
    if dbfs < MIN_RMS_DBFS:
        return f"is silent ({dbfs:.1f} dBFS RMS, at least {MIN_RMS_DBFS:.0f} expected)"
    return None


def _check_command(cmd: p.OtaCommand) -> None:
    from voicefleet.bundle import MANIFEST, MAX_BUNDLE_BYTES, SIGNATURE

    names = [f.name for f in cmd.files]
    if not cmd.base_url or not cmd.base_url.startswith(("http://", "https://")):
        raise UpdateFailed("bad_command", f"base_url {cmd.base_url!r} must be an http(s) URL")
    if MANIFEST not in names or SIGNATURE not in names or len(set(names)) != len(names):
        raise UpdateFailed("bad_command", f"files must list each bundle file once, {MANIFEST} and {SIGNATURE} "
                                          f"included (got {names})")
    if any(n.endswith(".part") for n in names) or sum(f.size for f in cmd.files) > MAX_BUNDLE_BYTES:
        raise UpdateFailed("bad_command", f"file names must not end in .part and the bundle must stay under "
                                          f"{MAX_BUNDLE_BYTES} bytes")


def _pend(s: SlotsState, cmd: p.OtaCommand) -> None:
    s.pending = cmd.model_dump(mode="json")


def _relink(s: SlotsState, cmd: p.OtaCommand) -> None:
    if s.pending and s.pending["command_id"] == cmd.command_id:
        s.pending["base_url"] = cmd.base_url


def _sha256(path: Path) -> str:
    from voicefleet.bundle import _digest

    return _digest(path)[1]
