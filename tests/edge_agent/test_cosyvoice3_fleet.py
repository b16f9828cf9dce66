"""A cloud agent whose CosyVoice3 has no default prompt, on real parts: control plane and agent as
processes on Mosquitto, the agent's CosyVoice3 engine driving the stand-in of upstream's
``CosyVoice3`` (test_cosyvoice3_serving.py) through upstream's module path. A plain job goes to the
next engine of its chain; a cloned-voice job to CosyVoice3, which fetches the clip from the API."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from services import http, new_cluster, wait_job

from benchmarks.signals import speechlike
from voicefleet.broker import MosquittoBroker
from voicefleet_cli.onebox import Cluster

pytest.importorskip("resemblyzer")  # a voice upload computes its speaker embedding

HERE = Path(__file__).resolve().parent


def upstream_on_path(root: Path) -> str:
    """A ``cosyvoice`` package whose ``cli.cosyvoice.AutoModel`` is the stand-in's; a PYTHONPATH with it."""
    cli = root / "cosyvoice" / "cli"
    cli.mkdir(parents=True)
    (root / "cosyvoice" / "__init__.py").write_text("")
    (cli / "__init__.py").write_text("")
    (cli / "cosyvoice.py").write_text("from test_cosyvoice3_serving import AutoModel  # noqa: F401\n")
    return ":".join([str(root), str(HERE), str(HERE.parent), str(HERE.parents[1])])


@pytest.fixture
def fleet(mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[tuple[Cluster, str]]:
    weights = tmp_path / "Fun-CosyVoice3-0.5B"
    weights.mkdir()
    (weights / "cosyvoice3.yaml").write_text("# the stand-in reads nothing from it\n")
    c = new_cluster(tmp_path, mqtt_broker.url)
    try:
        c.start_control_plane()
        device = f"gpu-{c.tag}"
        c.start_agent(device, role="cloud", engine="cosyvoice3,espeak", VOICEFLEET_COSYVOICE_DIR=str(weights),
                      PYTHONPATH=upstream_on_path(tmp_path / "upstream"))
        yield c, device
    finally:
        c.stop()


def submit(c: Cluster, **spec) -> dict:
    r = http.post(f"{c.api}/v1/jobs", json={"text": "您好，这里是客服中心。", **spec})
    assert r.status_code == 201, r.text
    return wait_job(c.api, r.json()["id"])


def upload_voice(c: Cluster) -> str:
    buf = io.BytesIO()
    sf.write(buf, speechlike(5.0, seed=3), 24000, format="WAV", subtype="PCM_16")
    r = http.post(f"{c.api}/v1/voices", files={"file": ("me.wav", buf.getvalue(), "audio/wav")},
                  data={"transcript": "今天天气很好，我们去公园散步吧。", "consent": "the speaker agreed in writing"},
                  timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_plain_jobs_go_to_the_next_engine_and_cloned_voices_to_cosyvoice3(fleet: tuple[Cluster, str]):
    c, device = fleet
    plain = submit(c)
    assert plain["state"] == "done", plain
    assert plain["device_id"] == device and plain["spoken_by"]["engine"] == "espeak-ng", plain["spoken_by"]
    assert not plain["spoken_by"].get("fallback"), "placement itself chose the next engine"

    voice = upload_voice(c)
    cloned = submit(c, voice=voice)
    assert cloned["state"] == "done", cloned
    assert cloned["spoken_by"]["engine"] == "cosyvoice3" and cloned["spoken_by"]["voice"] == voice, cloned["spoken_by"]
