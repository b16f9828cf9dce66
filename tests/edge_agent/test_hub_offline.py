"""The hub with the network gone: the local API and a reminder still speak, and once the broker is
back what happened offline reaches the control plane exactly once and in order. Real processes:
a Mosquitto of the test's own (so it can be stopped), a control plane and an edge agent with the
committed student model and its local API."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from services import new_cluster

from voicefleet.broker import MosquittoBroker, free_port


def wait_for(check, what: str, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def speak(api: str, text: str) -> httpx.Response:
    r = httpx.post(f"{api}/v1/speak", json={"text": text}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.content[:4] == b"RIFF" and len(r.content) > 44 + 2 * 2400
    return r


def test_offline_speech_and_reminders_then_history_exactly_once(tmp_path: Path):
    broker = MosquittoBroker(tmp_path / "mqtt").start()
    cluster = new_cluster(tmp_path, broker.url)
    hub, port = f"hub-{cluster.tag}", free_port()
    try:
        cluster.start_control_plane()
        cluster.start_agent(hub, role="edge", engine="student,espeak", VOICEFLEET_LOCAL_API_PORT=str(port),
                            VOICEFLEET_TELEMETRY_INTERVAL_S="0.5")
        local = f"http://127.0.0.1:{port}"
        assert speak(local, "网络正常的时候说一句。").headers["X-Voicefleet-Source"] == "local"

        broker.stop()  # the router is unplugged
        texts = ["现在没有网络。", "提醒功能照常工作。", "这句话来自本地模型。"]
        for text in texts:
            assert speak(local, text).headers["X-Voicefleet-Source"] in ("local", "cache")
        reminder = httpx.post(f"{local}/v1/reminders", json={"text": "下午三点开会", "at": time.time() + 1}).json()
        wait_for(lambda: next(r for r in httpx.get(f"{local}/v1/reminders").json()["reminders"]
                              if r["id"] == reminder["id"])["fired"] >= 1, "the reminder to fire", 15)
        time.sleep(1.5)  # some telemetry gathered offline

        broker.start()
        history = wait_for(lambda: _local_jobs(cluster.api, hub, 5), "the replayed history", 60)
        spoken = [r["body"]["text"] for r in history if r["record"] == "local_job"]
        assert spoken == ["网络正常的时候说一句。", *texts, "下午三点开会"]  # in order, once each
        assert [r["seq"] for r in history] == sorted(r["seq"] for r in history)
        all_records = httpx.get(f"{cluster.api}/v1/devices/{hub}/history").json()
        assert len({r["id"] for r in all_records}) == len(all_records)
        assert any(r["record"] == "telemetry" for r in all_records), "offline telemetry was not replayed"
    finally:
        cluster.stop()
        broker.stop()


def _local_jobs(api: str, device: str, count: int) -> list[dict] | None:
    try:
        records = httpx.get(f"{api}/v1/devices/{device}/history").json()
    except httpx.HTTPError:
        return None
    jobs = [r for r in records if r["record"] == "local_job"]
    return records if len(jobs) >= count else None


