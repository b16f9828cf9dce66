"""The hub's cloud path on real parts: a hub agent (the committed student, Mandarin only) whose local
API gets a Cantonese request sends it to a real control plane under the hub's own client token, a
cloud agent (eSpeak NG, which speaks Cantonese) serves it, and the hub streams that job's audio."""

from __future__ import annotations

import io
import shutil
import tempfile
import wave
from pathlib import Path

import httpx
from services import http, new_cluster, wait_for

from voicefleet.broker import MosquittoBroker


def pcm_of(wav_bytes: bytes) -> tuple[int, bytes]:
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        return wav.getframerate(), wav.readframes(wav.getnframes())


def test_the_hub_sends_what_its_voice_lacks_to_the_control_plane_and_streams_the_answer(
        mqtt_broker: MosquittoBroker, tmp_path: Path):
    cluster = new_cluster(tmp_path, mqtt_broker.url)
    hub, cloud = f"hub-{cluster.tag}", f"cloud-{cluster.tag}"
    sockets = Path(tempfile.mkdtemp(prefix="vf-hub-"))  # short: a Unix socket path has ~100 bytes
    socket = sockets / "local.sock"
    text = "早晨，今日天气好好。"
    try:
        cluster.start_control_plane()
        cluster.start_agent(cloud, role="cloud", engine="espeak")
        made = http.post(f"{cluster.api}/v1/tokens", json={"name": "the hub", "role": "client"})
        assert made.status_code == 201, made.text
        cluster.start_agent(hub, role="edge", engine="student", VOICEFLEET_LOCAL_API_SOCKET=str(socket),
                            VOICEFLEET_API_URL=cluster.api, VOICEFLEET_API_TOKEN=made.json()["token"])
        wait_for(socket.exists, "the hub's local API socket")
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://hub",
                          timeout=60) as local:
            spoken = local.post("/v1/speak", json={"text": text, "dialect": "yue"})
        assert spoken.status_code == 200, spoken.text
        assert spoken.headers["X-Voicefleet-Source"] == "cloud", spoken.headers
        assert "X-Voicefleet-Fallback" not in spoken.headers, spoken.headers["X-Voicefleet-Fallback"]

        jobs = [j for j in http.get(f"{cluster.api}/v1/jobs").json() if j["text"] == text]
        assert len(jobs) == 1, jobs
        job = http.get(f"{cluster.api}/v1/jobs/{jobs[0]['id']}").json()
        assert job["state"] == "done" and job["device_id"] == cloud and job["dialect"] == "yue"
        as_hub = httpx.get(f"{cluster.api}/v1/jobs/{job['id']}",
                           headers={"Authorization": f"Bearer {made.json()['token']}"})
        assert as_hub.status_code == 200  # submitted under the hub's own token
        stored = http.get(f"{cluster.api}/v1/jobs/{job['id']}/audio").content
        rate, pcm = pcm_of(spoken.content)
        assert (rate, pcm) == pcm_of(stored) and len(pcm) > 2 * rate // 2  # that job's audio, every sample
    finally:
        cluster.stop()
        shutil.rmtree(sockets, ignore_errors=True)
