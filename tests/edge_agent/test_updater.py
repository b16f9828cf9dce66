"""The updater in process against a real HTTP server (Range, counted bytes): install with resume after
a cut link, idempotency, refusals that leave the device on its model, and rollback. The agent's
restart after a switch is a new Updater on the same slots here; tests/edge_agent/test_power_cut.py
runs the real agent process."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from bundles import COMMITTED, COMMITTED_MANIFEST, install_command, make_key, student_bundle
from range_server import RangeServer
from services import wait_for

from edge_agent.ota_checks import audio_problem
from edge_agent.ota_download import file_url
from edge_agent.slots import SlotStore
from edge_agent.updater import Updater
from voicefleet import protocol as p

OLD = COMMITTED_MANIFEST.version


class Device:
    """Slots and an updater, as an agent holds them; ``restart()`` is the agent starting again."""

    def __init__(self, root: Path):
        self.slots = SlotStore(root)
        self.slots.boot(COMMITTED, max_boots=3)
        self.reports: list[p.OtaReport] = []
        self.switched = threading.Event()
        self.updater = self._updater()

    def _updater(self, **options) -> Updater:
        return Updater(self.slots, "dev-1", self.reports.append, self.switched.set, settle_s=5, **options)

    def restart(self) -> None:
        self.slots.boot(COMMITTED, max_boots=3)
        self.switched.clear()
        self.updater = self._updater()
        self.updater.resume()

    def final(self, command_id: str) -> p.OtaReport:
        return wait_for(lambda: next((r for r in reversed(self.reports) if r.command_id == command_id and r.stage in
                                      ("activated", "failed", "rolled_back")), None), f"update {command_id} to end")

    def stages(self, command_id: str) -> list[str]:
        return [r.stage for r in self.reports if r.command_id == command_id]


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    k = make_key(tmp_path / "keys")
    monkeypatch.setenv("VOICEFLEET_TRUSTED_KEYS", k.public_hex)
    return k


@pytest.fixture
def server(tmp_path: Path):
    with RangeServer(tmp_path / "served") as s:
        yield s


def install(device: Device, cmd: p.OtaCommand) -> p.OtaReport:
    device.updater.submit(cmd)
    wait_for(lambda: device.switched.is_set() or "failed" in device.stages(cmd.command_id), "the switch")
    if device.switched.is_set():
        device.restart()
    return device.final(cmd.command_id)


def test_install_with_a_cut_at_half_resumes_and_counts_each_byte_once(tmp_path: Path, key, server: RangeServer):
    student_bundle(server.root / "v2", key, "v2")
    cmd = install_command(server.root / "v2", f"{server.url}/v2?exp=99&sig=abc", rollout_id="ro-1")
    total = sum(f.size for f in cmd.files)
    synth = next(f for f in cmd.files if f.name == "synth.onnx")
    half = total // 2 - (total - synth.size)  # synth.onnx is fetched last: cut it where the bundle is half done
    server.cut_once("v2/synth.onnx", half)
    device = Device(tmp_path / "models")

    final = install(device, cmd)

    assert final.stage == "activated", final.error
    assert final.active == p.ActiveModel(model_id="zh-student-zhtts", version="v2", slot="b", previous_version=OLD)
    assert server.total_sent() == total  # nothing served twice
    assert [r for r in server.requests if r[0] == "v2/synth.onnx"] == [
        ("v2/synth.onnx", None, 200), ("v2/synth.onnx", f"bytes={half}-", 206)]
    stages = device.stages(cmd.command_id)
    assert stages[0] == "downloading" and stages[-4:] == ["downloading", "verified", "tested", "activated"]
    progress = [r.bytes_done for r in device.reports if r.stage == "downloading"]
    assert progress == sorted(progress) and progress[-1] == total
    tested = next(r for r in device.reports if r.stage == "tested")
    assert set(tested.test) == {"rtf", "first_chunk_s", "audio_s"} and 2 < tested.test["audio_s"] < 10
    assert all(r.rollout_id == "ro-1" for r in device.reports)
    s = device.slots.state()
    assert (s.active, s.slots["b"].status, s.pending) == ("b", "trial", None)
    assert sorted(f.name for f in device.slots.path("b").iterdir()) == sorted(f.name for f in cmd.files)


def test_a_redelivered_command_gets_its_report_again_and_nothing_is_redone(tmp_path: Path, key,
                                                                              server: RangeServer):
    student_bundle(server.root / "v2", key, "v2")
    cmd = install_command(server.root / "v2", f"{server.url}/v2")
    device = Device(tmp_path / "models")
    assert install(device, cmd).stage == "activated"
    sent, n = server.total_sent(), len(device.reports)
    device.updater.submit(cmd)
    wait_for(lambda: len(device.reports) > n, "the repeated report")
    again = device.reports[n:]
    assert [(r.stage, r.report_id) for r in again] == [("activated", device.reports[n - 1].report_id)]
    assert server.total_sent() == sent and not device.switched.is_set()


def test_a_model_that_fails_its_test_leaves_the_device_on_its_model(tmp_path: Path, key, server: RangeServer):
    student_bundle(server.root / "silent", key, "silent-1", output_gain=0.0)
    cmd = install_command(server.root / "silent", f"{server.url}/silent")
    device = Device(tmp_path / "models")
    final = install(device, cmd)
    assert (final.stage, final.error.code) == ("failed", "test_failed")
    assert "silent" in final.error.text
    assert device.stages(cmd.command_id)[-2:] == ["verified", "failed"]
    s = device.slots.state()
    assert (s.active, s.slots["a"].status, s.slots["b"].status, s.pending) == ("a", "good", "bad", None)
    assert not device.switched.is_set()
    assert final.active.version == OLD


@pytest.mark.parametrize("fault,code", [("untrusted", "bad_signature"), ("wrong_hash", "checksum_mismatch"),
                                        ("missing", "download_failed")])
def test_refused_bundles_never_switch(tmp_path: Path, key, server: RangeServer, fault: str, code: str):
    signer = make_key(tmp_path / "other") if fault == "untrusted" else key
    student_bundle(server.root / "v3", signer, "v3")
    cmd = install_command(server.root / "v3", f"{server.url}/v3")
    if fault == "wrong_hash":
        cmd = cmd.model_copy(update={"files": [f.model_copy(update={"sha256": "0" * 64}) if f.name == "symbols.json"
                                               else f for f in cmd.files]})
    if fault == "missing":
        (server.root / "v3" / "symbols.json").unlink()
    device = Device(tmp_path / "models")
    final = install(device, cmd)
    assert (final.stage, final.error.code) == ("failed", code), final.error
    assert device.slots.state().active == "a" and not device.switched.is_set()


def test_rollback_returns_to_the_previous_slot(tmp_path: Path, key, server: RangeServer):
    student_bundle(server.root / "v2", key, "v2")
    device = Device(tmp_path / "models")
    assert install(device, install_command(server.root / "v2", f"{server.url}/v2")).stage == "activated"
    back = p.OtaCommand(op="rollback", command_id="rollback-0001", model_id="zh-student-zhtts", version=OLD)
    final = install(device, back)
    assert final.stage == "rolled_back"
    assert final.active == p.ActiveModel(model_id="zh-student-zhtts", version=OLD, slot="a", previous_version=None)
    s = device.slots.state()
    assert (s.active, s.slots["b"].status) == ("a", "bad")  # left while still on trial
    nowhere = p.OtaCommand(op="rollback", command_id="rollback-0002", model_id="zh-student-zhtts", version="v9")
    assert install(device, nowhere).error.code == "no_such_version"


def test_one_update_at_a_time(tmp_path: Path, key, server: RangeServer):
    student_bundle(server.root / "v2", key, "v2")
    student_bundle(server.root / "v3", key, "v3")
    device = Device(tmp_path / "models")
    device.updater.pause_after = "verified"  # hold the first update after a step
    first = install_command(server.root / "v2", f"{server.url}/v2")
    device.updater.submit(first)
    wait_for(lambda: (device.slots.root / "paused").exists(), "the first update to pause")
    second = install_command(server.root / "v3", f"{server.url}/v3")
    device.updater.submit(second)
    refusal = device.final(second.command_id)
    assert (refusal.stage, refusal.error.code) == ("failed", "busy") and first.command_id in refusal.error.text


def test_a_refused_link_waits_for_the_command_again_with_a_fresh_one(tmp_path: Path, key, server: RangeServer):
    student_bundle(server.root / "v2", key, "v2")
    server.refused_queries.add("exp=1&sig=old")  # expired while the device was off
    cmd = install_command(server.root / "v2", f"{server.url}/v2?exp=1&sig=old")
    device = Device(tmp_path / "models")
    device.updater.submit(cmd)
    wait_for(lambda: any(status == 403 for *_, status in server.requests), "the refused link")
    device.updater.submit(cmd.model_copy(update={"base_url": f"{server.url}/v2?exp=2&sig=new"}))  # resent
    wait_for(device.switched.is_set, "the switch")
    assert device.slots.state().pending["base_url"].endswith("sig=new")  # a restart would resume with it
    device.restart()
    assert device.final(cmd.command_id).stage == "activated"
    assert [s for *_, s in server.requests].count(403) == 1

    device = Device(tmp_path / "other")
    device.updater = device._updater(link_wait_s=0.2)
    again = install_command(server.root / "v2", f"{server.url}/v2?exp=1&sig=old")
    device.updater.submit(again)
    final = device.final(again.command_id)
    assert (final.stage, final.error.code) == ("failed", "link_expired") and "403" in final.error.text


def test_file_urls_keep_a_signed_query():
    assert file_url("https://cp.example/v1/models/m/1/files?exp=9&sig=ab", "synth.onnx") == \
        "https://cp.example/v1/models/m/1/files/synth.onnx?exp=9&sig=ab"
    assert file_url("http://h:1/b/", "manifest.json") == "http://h:1/b/manifest.json"


def test_audio_checks():
    import numpy as np

    rng = np.random.default_rng(0)
    speech = (rng.standard_normal(24000 * 3) * 3000).astype("<i2")
    assert audio_problem(speech, 24000, "今天下午三点提醒我开会") is None
    assert "empty" in audio_problem(speech[:0], 24000, "今天")
    assert "silent" in audio_problem(np.zeros(24000 * 3, "<i2"), 24000, "今天下午三点提醒我开会")
    assert "lasts" in audio_problem(speech[:2400], 24000, "今天下午三点提醒我开会")
    assert "full scale" in audio_problem(np.full(24000 * 3, 32767, "<i2"), 24000, "今天下午三点提醒我开会")
