"""VOICEFLEET_LOG_FORMAT=json: one JSON object a line, each naming its process (``replica``), and one
line per job event with its job, device and attempt, written by a real control plane and a real agent
speaking a real job."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from services import new_cluster, wait_job

from voicefleet import logs
from voicefleet.broker import MosquittoBroker


def test_a_record_becomes_one_json_line_with_its_fields_and_replica():
    logs.set_replica("cp-test")
    try:
        record = logging.LogRecord("voicefleet.jobs", logging.INFO, __file__, 1, "job %s %s", ("j1", "done"), None)
        record.job_id, record.attempt = "j1", 2
        line = json.loads(logs.JsonFormatter().format(record))
    finally:
        logs.set_replica("")
    assert line["msg"] == "job j1 done" and line["level"] == "info" and line["logger"] == "voicefleet.jobs"
    assert (line["replica"], line["job_id"], line["attempt"]) == ("cp-test", "j1", 2)


def test_a_job_is_followed_through_json_lines_across_the_control_plane_and_its_device(
        tmp_path: Path, mqtt_broker: MosquittoBroker):
    cluster = new_cluster(tmp_path, mqtt_broker.url, VOICEFLEET_LOG_FORMAT="json")
    device = f"edge-{cluster.tag}"
    try:
        cluster.start_control_plane()
        cluster.start_agent(device)
        job = cluster.post("/v1/jobs", {"text": "Hello from the log test.", "lang": "en"})
        assert wait_job(cluster.api, job["id"])["state"] == "done"
    finally:
        cluster.stop()
    control = [json.loads(line) for line in (cluster.home / "control-plane.log").read_text().splitlines()
               if line.startswith("{")]
    assert control and all(line["replica"] == f"cp-{cluster.tag}" for line in control)
    events = [line for line in control if line.get("job_id") == job["id"]]
    assert [e["event"] for e in events][:1] == ["queued"] and events[-1]["event"] == "done", events
    done = events[-1]
    assert done["device_id"] == device and done["attempt"] == 1 and done["msg"].startswith(f"job {job['id']} done")
    agent = (cluster.home / f"agent-{device}.log").read_text().splitlines()
    assert agent and all(json.loads(line)["replica"] == device for line in agent if line.startswith("{"))
