"""Two model slots, A and B, under the agent's data dir, and the one file that says which to start from.

Layout (``<data_dir>/models``)::

    a/, b/        a bundle each (flat folder, exactly what verify_bundle accepts), or files being written
    slots.json    the state: active slot, each slot's model and status, boot count on trial, the update
                  being carried out, the last reports of finished updates

Every change of state is one ``os.replace`` of ``slots.json`` (written beside it and fsynced first), so a
power cut leaves the old state or the new one, never half of each. A slot is marked ``writing`` before
any of its files is touched, and only a ``good`` or ``trial`` slot is ever started from. The switch to
a new model is a single such write: ``active`` moves to the new slot, on ``trial``. Each start on a
trial slot counts a boot; past ``max_boots`` starts without being marked good (a crash loop) the next
start falls back to the other slot, which stayed ``good`` for exactly this (see docs/updates.md).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from voicefleet import protocol as p
from voicefleet.files import fsync_dir, fsync_file, write_atomic

if TYPE_CHECKING:
    from edge_agent.engines.base import Engine

log = logging.getLogger(__name__)
Slot = Literal["a", "b"]
STATE_FILE = "slots.json"
FINISHED_KEPT = 50  # reports kept for redelivered commands


class SlotRecord(BaseModel):
    model_id: str
    version: str
    # writing: files being downloaded or copied; trial: active, not yet marked good; bad: failed its test
    # or crash-looped; good: has run (or was seeded) and may be fallen back to.
    status: Literal["writing", "trial", "good", "bad"]
    command_id: str | None = None


class SlotsState(BaseModel):
    active: Slot
    slots: dict[Slot, SlotRecord] = Field(default_factory=dict)
    boots: int = 0  # starts on the active slot since it went on trial
    pending: dict[str, Any] | None = None  # the OtaCommand being carried out (resumed after a restart)
    finished: dict[str, dict[str, Any]] = Field(default_factory=dict)  # command_id -> its last OtaReport
    unreported: dict[str, Any] | None = None  # a fall-back done at boot, reported once connected


@dataclass(frozen=True)
class Boot:
    slot: Slot
    path: Path
    fell_back: bool  # this start left a crash-looping trial slot for the other one


def other(slot: Slot) -> Slot:
    return "b" if slot == "a" else "a"


class SlotStore:
    """The slots of one agent. Thread-safe: the updater and the agent's mark-good timer both write."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = threading.RLock()

    # -- reading ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.root / STATE_FILE).is_file()

    def state(self) -> SlotsState:
        return SlotsState.model_validate_json((self.root / STATE_FILE).read_bytes())

    def path(self, slot: Slot) -> Path:
        return self.root / slot

    def active_model(self) -> p.ActiveModel | None:
        if not self.exists():
            return None
        s = self.state()
        rec, prev = s.slots[s.active], s.slots.get(other(s.active))
        return p.ActiveModel(model_id=rec.model_id, version=rec.version, slot=s.active,
                             previous_version=prev.version if prev and prev.status == "good" else None)

    def on_trial(self) -> bool:
        s = self.state()
        return s.slots[s.active].status == "trial"

    # -- writing ---------------------------------------------------------------------------

    def save(self, state: SlotsState) -> None:
        """Replace slots.json in one rename, its bytes on disk first (safe against a power cut)."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / STATE_FILE, state.model_dump_json(indent=1), durable=True)

    def update(self, change) -> SlotsState:
        """Read, change (a function of the state, in place), save, under the lock."""
        with self._lock:
            s = self.state()
            change(s)
            self.save(s)
            return s

    # -- boot ------------------------------------------------------------------------------

    def boot(self, seed: Path, max_boots: int) -> Boot:
        """The slot to start from, seeding slot A from ``seed`` on first start and counting a start on
        a trial slot; past ``max_boots`` such starts, fall back to the other slot."""
        with self._lock:
            if not self.exists():
                self._seed(seed)
            s = self.state()
            fell_back = False
            if s.slots[s.active].status == "trial":
                s.boots += 1
                back = s.slots.get(other(s.active))
                if s.boots > max_boots and back is not None and back.status == "good":
                    self._fall_back(s, "crash_loop", f"the agent started {s.boots - 1} times on "
                                    f"{s.slots[s.active].version} without staying up long enough to mark it good")
                    fell_back = True
                self.save(s)
            return Boot(s.active, self.path(s.active), fell_back)

    def _seed(self, seed: Path) -> None:
        """Copy the bundle the agent shipped with into slot A (verified by the engine that loads it)."""
        from voicefleet.bundle import BundleManifest, open_bundle

        seed = open_bundle(seed)  # a folder, or a .tar.gz unpacked
        manifest = BundleManifest.model_validate_json((seed / "manifest.json").read_bytes())
        target = self.path("a")
        shutil.rmtree(target, ignore_errors=True)  # a seed cut short before slots.json was written
        tmp = Path(tempfile.mkdtemp(dir=self.root if self.root.exists() else _mkdir(self.root), prefix=".seed-"))
        for file in seed.iterdir():
            if file.is_file():
                shutil.copyfile(file, tmp / file.name)
                fsync_file(tmp / file.name)
        tmp.rename(target)
        fsync_dir(self.root)
        self.save(SlotsState(active="a", slots={"a": SlotRecord(model_id=manifest.model_id, version=manifest.version,
                                                                 status="good")}))
        log.info("slot a seeded with %s %s from %s", manifest.model_id, manifest.version, seed)

    def fall_back(self, code: str, text: str) -> bool:
        """Leave a trial slot for the good one (its engine would not start, say); False if there is none."""
        with self._lock:
            s = self.state()
            back = s.slots.get(other(s.active))
            if s.slots[s.active].status != "trial" or back is None or back.status != "good":
                return False
            self._fall_back(s, code, text)
            self.save(s)
            return True

    def _fall_back(self, s: SlotsState, code: str, text: str) -> None:
        bad = s.slots[s.active]
        log.error("falling back from %s %s (slot %s): %s", bad.model_id, bad.version, s.active, text)
        s.slots[s.active] = bad.model_copy(update={"status": "bad"})
        s.active, s.boots = other(s.active), 0
        cmd = s.pending or {}
        s.unreported = {"command_id": bad.command_id or cmd.get("command_id") or "boot",
                        "rollout_id": cmd.get("rollout_id"), "model_id": bad.model_id, "version": bad.version,
                        "code": code, "text": text}
        s.pending = None

    def mark_good(self) -> bool:
        """The trial slot has stayed up long enough: it becomes the one to fall back to."""
        def change(s: SlotsState) -> None:
            rec = s.slots[s.active]
            if rec.status == "trial":
                s.slots[s.active] = rec.model_copy(update={"status": "good"})
                s.boots = 0

        with self._lock:
            if not self.on_trial():
                return False
            self.update(change)
            log.info("slot %s marked good", self.state().active)
            return True

    def finish(self, report: p.OtaReport) -> None:
        """Remember a command's final report (answering a redelivery) and clear it as pending."""
        def change(s: SlotsState) -> None:
            if s.pending and s.pending.get("command_id") == report.command_id:
                s.pending = None
            s.finished[report.command_id] = report.model_dump(mode="json")
            for old in list(s.finished)[:-FINISHED_KEPT]:
                del s.finished[old]

        self.update(change)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def boot_engine(settings, slots: SlotStore, engines=None):
    """The agent's engines (``settings.engine`` among ``engines``, default the production ones) with the
    student from the slot to start from. A trial slot whose student will not start is left at once for
    the good one (reported by the updater once connected)."""
    from edge_agent.engines import ENGINES, load_engine
    from edge_agent.engines.base import EngineUnavailable
    from edge_agent.engines.student import DEFAULT_BUNDLE

    engines = engines or ENGINES
    boot = slots.boot(settings.student_bundle or DEFAULT_BUNDLE, settings.ota_max_boots)
    try:
        engine = load_engine(settings.engine_spec(), settings, student_bundle=boot.path, engines=engines)
        problem = None if _has_student(engine) else "the student engine did not start (see the warning above)"
    except EngineUnavailable as exc:
        engine, problem = None, exc.text
    if problem and slots.fall_back("engine_unavailable", f"the new model would not start: {problem}"):
        return load_engine(settings.engine_spec(), settings, student_bundle=slots.path(slots.state().active),
                           engines=engines)
    if engine is None:
        raise EngineUnavailable(problem)
    return engine


def _has_student(engine: Engine) -> bool:
    return any(e.descriptor.name == "student-onnx" for e in engine.members())
