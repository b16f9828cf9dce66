"""What arrives over MQTT is untrusted: malformed, oversized or stale messages are logged and
dropped without harming the control plane or any other job."""

from __future__ import annotations

import time

import paho.mqtt.client as paho
from services import http

from voicefleet import protocol as p
from voicefleet.settings import mqtt_host_port
from voicefleet_cli.onebox import Cluster


def publish_all(url: str, messages: list[tuple[str, bytes]]) -> None:
    host, port = mqtt_host_port(url)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-garbage", protocol=paho.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_malformed_device_messages_are_dropped(cluster: Cluster):
    api, dev = cluster.api, cluster.edge_id
    event = p.device_topic(dev, "event")
    running = http.post(f"{api}/v1/jobs", json={"text": "稍等一下。" * 400}).json()["id"]
    good_chunk = p.AudioChunk(job_id=running, attempt=1, seq=0, sample_rate=22050)
    publish_all(cluster.env["VOICEFLEET_MQTT_URL"], [
        (event, b"\xff\xfe not json"),
        (event, b"[1, 2, 3]"),
        (event, b'{"v": 99, "type": "event", "kind": "done"}'),
        (event, b'{"v": 1, "type": "event", "kind": "teleport", "job_id": "x", "attempt": 1}'),
        (event, b'{"v": 1, "type": "event", "kind": "done", "job_id": "x"}'),
        (event, p.encode(good_chunk, b"\x01\x02\x03")),  # odd number of PCM bytes
        (event, b"{" + b" " * (p.MAX_PAYLOAD_BYTES + 10) + b"}"),  # oversized
        (event, p.encode(p.JobDone(job_id=running, attempt=7, chunks=1, samples=1, sample_rate=22050,
                                   sha256="0" * 64, engine=p.EngineDescriptor(name="x", version="1", model="m",
                                                                               sample_rate=22050)))),  # stale
        (p.device_topic(dev, "state"), b'{"v": 1, "type": "state"}'),
        (p.device_topic(dev, "telemetry"), b"nonsense"),
    ])
    # The job that was running when the garbage arrived, and a new one, both finish.
    deadline = time.monotonic() + 60
    nxt = http.post(f"{api}/v1/jobs", json={"text": "还在工作吗"}).json()["id"]
    for job_id in (running, nxt):
        while (job := http.get(f"{api}/v1/jobs/{job_id}").json())["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["state"] == "done", job
    assert cluster.control.poll() is None, "the control plane died"
    metrics = http.get(f"{api}/metrics").text
    dropped = {line.split('"')[1]: float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("voicefleet_mqtt_dropped_messages_total{")}
    assert dropped.get("bad_json", 0) >= 3 and dropped.get("bad_version") == 1, dropped
    assert dropped.get("bad_message", 0) >= 3 and dropped.get("bad_audio") == 1 and dropped.get("too_large") == 1
    assert cluster.device_status(dev) == "online", "a malformed state message must not change the device"


def test_agent_ignores_malformed_assignments(cluster: Cluster):
    """An agent's job topic gets garbage and a duplicate: it keeps serving, runs the job once."""
    job_topic = p.device_topic(cluster.cloud_id, "job")
    publish_all(cluster.env["VOICEFLEET_MQTT_URL"], [(job_topic, b"garbage"), (job_topic, b'{"v": 1}')])
    job_id = http.post(f"{cluster.api}/v1/jobs", json={"text": "你好"}).json()["id"]
    deadline = time.monotonic() + 30
    while (job := http.get(f"{cluster.api}/v1/jobs/{job_id}").json())["state"] != "done":
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert all(proc.poll() is None for proc in cluster.agents.values())


def test_agent_sigkill_mid_job_requeues_to_another_device(cluster: Cluster):
    """The last will marks the device offline at once; its job runs again elsewhere."""
    job_id = http.post(f"{cluster.api}/v1/jobs", json={"text": "这是一段很长的提醒。" * 450}).json()["id"]
    deadline = time.monotonic() + 30
    while (job := http.get(f"{cluster.api}/v1/jobs/{job_id}").json())["state"] not in ("running", "done"):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    first = job["device_id"]
    cluster.agents[first].kill()
    while (job := http.get(f"{cluster.api}/v1/jobs/{job_id}").json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline + 30, job
        time.sleep(0.05)
    kinds = [e["kind"] for e in job["events"]]
    assert job["state"] == "done" and job["device_id"] != first, job
    assert "attempt_failed" in kinds and job["attempt"] == 2
    assert cluster.device_status(first) == "offline"


def test_agent_sigterm_finishes_its_job_then_goes_offline(cluster: Cluster):
    """A clean shutdown drains: the running job completes on the same device, nothing is lost."""
    job_id = http.post(f"{cluster.api}/v1/jobs", json={"text": "请稍等，正在处理。" * 500}).json()["id"]
    deadline = time.monotonic() + 30
    while (job := http.get(f"{cluster.api}/v1/jobs/{job_id}").json())["state"] != "running":
        assert time.monotonic() < deadline and job["state"] != "done", job
        time.sleep(0.005)
    device = job["device_id"]
    cluster.agents[device].terminate()
    assert cluster.agents[device].wait(30) == 0
    while cluster.device_status(device) != "offline":  # its last messages are still being processed
        assert time.monotonic() < deadline + 30
        time.sleep(0.05)
    job = http.get(f"{cluster.api}/v1/jobs/{job_id}").json()
    assert job["state"] == "done" and job["device_id"] == device and job["attempt"] == 1, job


def test_control_plane_sigkill_and_restart_loses_no_job(cluster: Cluster):
    """Killed mid-stream, restarted on the same database and MQTT session: every accepted job
    ends done, once, with intact audio (the broker redelivers what was never acked)."""
    api = cluster.api
    ids = [http.post(f"{api}/v1/jobs", json={"text": f"第{i}条提醒：请在三点前回复邮件。" * 20}).json()["id"]
           for i in range(12)]
    time.sleep(0.3)
    cluster.control.kill()
    cluster.control.wait(10)
    cluster.start_control_plane()
    deadline = time.monotonic() + 90
    for job_id in ids:
        while (job := http.get(f"{api}/v1/jobs/{job_id}").json())["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["state"] == "done", job
        assert [e["kind"] for e in job["events"]].count("done") == 1
        audio = http.get(f"{api}/v1/jobs/{job_id}/audio")
        assert audio.status_code == 200 and len(audio.content) > 44 + 22050 * 2
