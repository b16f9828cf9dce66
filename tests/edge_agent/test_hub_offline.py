"""The hub with the network gone: the local API and a reminder still speak, and once the broker is
back what happened offline reaches the control plane exactly once and in order. Real processes:
a Mosquitto of the test's own (so it can be stopped), a control plane and an edge agent with the
committed student model and its local API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from services import http, new_cluster, wait_for

from voicefleet.broker import MosquittoBroker, free_port
from voicefleet.credentials import auth_headers

LOCAL_TOKEN = "hub-offline-test"  # the hub's VOICEFLEET_LOCAL_API_TOKEN: its loopback port takes nothing else
ON_HUB = {"VOICEFLEET_LOCAL_API_TOKEN": LOCAL_TOKEN}
local_http = httpx.Client(headers=auth_headers(LOCAL_TOKEN), timeout=30)


def speak(api: str, text: str) -> httpx.Response:
    r = local_http.post(f"{api}/v1/speak", json={"text": text})
    assert r.status_code == 200, r.text
    assert r.content[:4] == b"RIFF" and len(r.content) > 44 + 2 * 2400
    return r


def test_offline_speech_and_reminders_then_history_exactly_once(tmp_path: Path):
    broker = MosquittoBroker(tmp_path / "mqtt").start()
    cluster = new_cluster(tmp_path, broker.url)
    hub, port = f"hub-{cluster.tag}", free_port()
    try:
        cluster.start_control_plane()
        wyoming = free_port()
        cluster.start_agent(hub, role="edge", engine="student,espeak", VOICEFLEET_LOCAL_API_PORT=str(port), **ON_HUB,
                            VOICEFLEET_TELEMETRY_INTERVAL_S="0.5", VOICEFLEET_WYOMING_URI=f"tcp://127.0.0.1:{wyoming}")
        local = f"http://127.0.0.1:{port}"
        assert speak(local, "网络正常的时候说一句。").headers["X-Voicefleet-Source"] == "local"

        broker.stop()  # the router is unplugged
        texts = ["现在没有网络。", "提醒功能照常工作。", "这句话来自本地模型。"]
        for text in texts:
            assert speak(local, text).headers["X-Voicefleet-Source"] in ("local", "cache")
        reminder = local_http.post(f"{local}/v1/reminders", json={"text": "下午三点开会", "at": time.time() + 1}).json()
        wait_for(lambda: next(r for r in local_http.get(f"{local}/v1/reminders").json()["reminders"]
                              if r["id"] == reminder["id"])["fired"] >= 1, "the reminder to fire", 15)
        assert asyncio.run(_wyoming_audio_bytes(wyoming, "网络断开时家庭助手照样说话。")) > 2 * 24000
        time.sleep(1.5)  # some telemetry gathered offline

        broker.start()
        history = wait_for(lambda: _local_jobs(cluster.api, hub, 6), "the replayed history", 60)
        spoken = [(r["body"]["text"], r["body"]["source"]) for r in history if r["record"] == "local_job"]
        # in the order spoken, once each (the reminder is saved as fired just before it speaks, so it
        # may finish speaking after the Wyoming phrase that follows in this test: those two in any order)
        assert [text for text, _ in spoken[:4]] == ["网络正常的时候说一句。", *texts]
        assert sorted(spoken[4:]) == sorted([("下午三点开会", "local"), ("网络断开时家庭助手照样说话。", "wyoming")])
        assert [r["seq"] for r in history] == sorted(r["seq"] for r in history)
        all_records = http.get(f"{cluster.api}/v1/devices/{hub}/history").json()
        assert len({r["id"] for r in all_records}) == len(all_records)
        assert any(r["record"] == "telemetry" for r in all_records), "offline telemetry was not replayed"
    finally:
        cluster.stop()
        broker.stop()


async def _wyoming_audio_bytes(port: int, text: str) -> int:
    from wyoming.audio import AudioChunk
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import Synthesize

    total = 0
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text=text).event())
        while (event := await client.read_event()) is not None and event.type != "audio-stop":
            if AudioChunk.is_type(event.type):
                total += len(AudioChunk.from_event(event).audio)
    return total


def _local_jobs(api: str, device: str, count: int) -> list[dict] | None:
    try:
        records = http.get(f"{api}/v1/devices/{device}/history").json()
    except httpx.HTTPError:
        return None
    jobs = [r for r in records if r["record"] == "local_job"]
    return records if len(jobs) >= count else None




def test_reminders_set_from_the_control_plane_reach_the_hub(mqtt_broker: MosquittoBroker, tmp_path: Path):
    cluster = new_cluster(tmp_path, mqtt_broker.url)
    hub, port = f"hub-{cluster.tag}", free_port()
    try:
        cluster.start_control_plane()
        cluster.start_agent(hub, role="edge", engine="student,espeak", VOICEFLEET_LOCAL_API_PORT=str(port), **ON_HUB)
        local = f"http://127.0.0.1:{port}"

        def on_hub() -> list[dict]:
            return local_http.get(f"{local}/v1/reminders").json()["reminders"]

        sent = http.post(f"{cluster.api}/v1/devices/{hub}/reminders", json={"text": "喝水", "every_s": 3600})
        assert sent.status_code == 202, sent.text
        rid = sent.json()["id"]
        wait_for(lambda: any(r["id"] == rid and r["text"] == "喝水" for r in on_hub()), "the reminder on the hub")
        bad = http.post(f"{cluster.api}/v1/devices/{hub}/reminders", json={"text": "喝水"})
        assert bad.status_code == 422 and "exactly one" in bad.text
        assert http.delete(f"{cluster.api}/v1/devices/{hub}/reminders/{rid}").status_code == 202
        wait_for(lambda: all(r["id"] != rid for r in on_hub()), "the reminder to go")
    finally:
        cluster.stop()


def test_a_hub_asked_for_a_tcp_port_without_a_token_stops_and_says_what_to_set(mqtt_broker: MosquittoBroker,
                                                                               tmp_path: Path):
    """Any local user can reach a loopback port: the agent will not open one without a token, and
    says which setting fixes it (one line, not a traceback)."""
    cluster = new_cluster(tmp_path, mqtt_broker.url)
    hub = f"hub-{cluster.tag}"
    try:
        proc = cluster.start_agent(hub, role="edge", engine="espeak", wait=False,
                                   VOICEFLEET_LOCAL_API_PORT=str(free_port()))
        assert proc.wait(timeout=60) == 2
        said = (cluster.home / f"agent-{hub}.log").read_text()
        assert "error: local_api_token_missing:" in said and "VOICEFLEET_LOCAL_API_TOKEN" in said, said
        assert "Traceback" not in said, said
    finally:
        cluster.stop()
