"""Power cuts during an update, on a real agent process and the real broker: the update stops after
each step in turn (VOICEFLEET_OTA_PAUSE_AFTER), the agent is SIGKILLed there and started again. Each
time it comes up with a working model and speaks a job at once, then finishes the update by itself
(a download continues where it stopped) and speaks with the new model. A crash loop after the switch
falls back to the previous model by itself and says why."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest
from bundles import COMMITTED_MANIFEST, install_command, make_key, student_bundle
from devicewatch import DeviceWatch
from range_server import RangeServer
from services import wait_for

from edge_agent.updater import STEPS
from voicefleet import protocol as p
from voicefleet.broker import MosquittoBroker, free_port
from voicefleet.credentials import auth_headers
from voicefleet_cli.onebox import Cluster

OLD = COMMITTED_MANIFEST.version


class Watch(DeviceWatch):
    """A device's states and events (tests/devicewatch.py), with what the update tests ask of it."""

    def online(self, after: int = 0, version: str | None = None) -> p.DeviceState:
        def check():
            return next((s for s in self.states[after:] if s.status == "online" and s.model is not None
                         and version in (None, s.model.version)), None)
        return wait_for(check, f"{self.device_id} online with model {version or 'any'}", 60)

    def ota(self, command_id: str, stage: str) -> p.OtaReport:
        return wait_for(lambda: next((e for e in self.events if isinstance(e, p.OtaReport)
                                      and e.command_id == command_id and e.stage == stage), None),
                        f"ota {stage}", 60)

    def speak(self, text: str = "请在会议前准备好材料。") -> p.JobDone:
        """A job sent straight to the device; one handed back by an agent restarting for a new model is
        sent again once it is online (the control plane would dispatch it again the same way)."""
        for _ in range(3):
            n, job = len(self.states), p.JobAssign(job_id=uuid.uuid4().hex, attempt=1, text=text)
            self.send("job", job)
            end = wait_for(lambda job_id=job.job_id: next((e for e in self.events if isinstance(
                e, p.JobDone | p.JobFailed | p.JobReturned) and e.job_id == job_id), None), "the job", 30)
            if not isinstance(end, p.JobReturned):
                break
            self.online(after=n)
        assert isinstance(end, p.JobDone), end
        assert end.samples > 24000 // 2
        return end



@pytest.fixture
def rig(tmp_path: Path, mqtt_broker: MosquittoBroker):
    """A served v2 bundle, an agent launcher on the shared broker and a watch on the device."""
    key = make_key(tmp_path / "keys")
    server = RangeServer(tmp_path / "served").start()
    student_bundle(server.root / "v2", key, "v2")
    device_id = f"pc-{uuid.uuid4().hex[:6]}"
    cluster = Cluster(tmp_path / "home", mqtt_url=mqtt_broker.url,
                      env={"VOICEFLEET_TRUSTED_KEYS": key.public_hex, "VOICEFLEET_MQTT_SESSION_EXPIRY_S": "30",
                           "VOICEFLEET_OTA_MARK_GOOD_S": "1", "VOICEFLEET_TAGS": "site:lab, hw:x86"})
    watch = Watch(mqtt_broker.url, device_id)

    class Rig:
        pass

    r = Rig()
    r.server, r.cluster, r.watch, r.device_id = server, cluster, watch, device_id
    r.models = cluster.home / "agents" / device_id / "models"
    r.command = install_command(server.root / "v2", f"{server.url}/v2?exp=1&sig=test")
    r.start = lambda **env: cluster.start_agent(device_id, engine="student", wait=False, **env)
    try:
        yield r
    finally:
        cluster.stop()
        watch.stop()
        server.stop()


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.mark.parametrize("step", STEPS)
def test_a_power_cut_after_each_step_leaves_a_working_model(rig, step: str):
    w = rig.watch
    proc = rig.start(VOICEFLEET_OTA_PAUSE_AFTER=step)
    w.online(version=OLD)
    w.send("ota", rig.command)
    wait_for(lambda: (rig.models / "paused").is_file(), f"the update to pause after {step}", 60)
    kill(proc)
    state = json.loads((rig.models / "slots.json").read_text())
    assert state["slots"][state["active"]]["status"] in ("good", "trial")

    n = len(w.states)
    rig.start()  # the power is back
    up = w.online(after=n)
    assert up.model.version in (OLD, "v2") and up.tags == ["site:lab", "hw:x86"]
    # it speaks at once (with the model it came up with, or the new one if the update, going on by itself,
    # restarted it first and the job was handed back and sent again)
    assert w.speak().engine.version in (up.model.version, "v2")

    w.ota(rig.command.command_id, "activated")
    assert w.online(after=n, version="v2").model.previous_version == OLD
    assert w.speak().engine.version == "v2"
    wait_for(lambda: json.loads((rig.models / "slots.json").read_text())["slots"]["b"]["status"] == "good",
             "the new model to be marked good", 30)
    total = sum(f.size for f in rig.command.files)
    resumed = [rng for _, rng, _ in rig.server.requests if rng]
    if step == "half":  # the download went on from where it stopped: synth.onnx (fetched last) at least half done
        synth = next(f for f in rig.command.files if f.name == "synth.onnx")
        assert len(resumed) == 1 and int(resumed[0][6:-1]) >= total // 2 - (total - synth.size), rig.server.requests
    else:
        assert resumed == [] and rig.server.total_sent() == total


def test_a_crash_loop_after_the_switch_falls_back_by_itself(rig):
    w = rig.watch
    env = {"VOICEFLEET_OTA_MARK_GOOD_S": "600", "VOICEFLEET_OTA_MAX_BOOTS": "2"}
    proc = rig.start(**env)
    w.online(version=OLD)
    w.send("ota", rig.command)
    w.ota(rig.command.command_id, "activated")  # the agent restarted itself on v2: its first start there
    for i in range(2):  # it dies before it is marked good, twice more
        n = len(w.states)
        w.online(version="v2")
        kill(proc)
        proc = rig.start(**env)
        if i == 0:
            w.online(after=n, version="v2")
    back = w.ota(rig.command.command_id, "rolled_back")
    assert back.error.code == "crash_loop" and "v2" in back.error.text
    assert back.active.version == OLD
    w.online(after=n, version=OLD)
    assert w.speak().engine.version == OLD


def test_a_hub_finishes_an_update_the_power_cut_left_pending_with_the_broker_gone(tmp_path: Path):
    """Restarted with no broker, a hub goes on with the download (from the control plane's files, still
    reachable), switches and restarts itself on the new model; its local API speaks with it."""
    import httpx

    key = make_key(tmp_path / "keys")
    broker = MosquittoBroker(tmp_path / "mqtt").start()
    server = RangeServer(tmp_path / "served").start()
    student_bundle(server.root / "v2", key, "v2")
    hub, port = f"hub-{uuid.uuid4().hex[:6]}", free_port()
    cluster = Cluster(tmp_path / "home", mqtt_url=broker.url,
                      env={"VOICEFLEET_TRUSTED_KEYS": key.public_hex, "VOICEFLEET_LOCAL_API_PORT": str(port),
                           "VOICEFLEET_LOCAL_API_TOKEN": "power-cut-test"})
    models = cluster.home / "agents" / hub / "models"
    watch = Watch(broker.url, hub)
    try:
        proc = cluster.start_agent(hub, engine="student", wait=False, VOICEFLEET_OTA_PAUSE_AFTER="received")
        watch.online(version=OLD)
        watch.send("ota", install_command(server.root / "v2", f"{server.url}/v2"))
        wait_for(lambda: (models / "paused").is_file(), "the update to pause", 60)
        kill(proc)
        watch.stop()
        broker.stop()  # the router is unplugged as the power comes back

        cluster.start_agent(hub, engine="student", wait=False)
        local = f"http://127.0.0.1:{port}"

        def engine_version():
            try:
                return httpx.get(f"{local}/healthz", timeout=2, headers=auth_headers("power-cut-test")).json()[
                    "engine"]["version"]
            except httpx.HTTPError:
                return None

        wait_for(lambda: engine_version() == "v2", "the hub on the new model", 60)
        spoken = httpx.post(f"{local}/v1/speak", json={"text": "新模型离线也能说话。"}, timeout=30,
                            headers=auth_headers("power-cut-test"))
        assert spoken.status_code == 200 and len(spoken.content) > 44 + 24000
        assert json.loads((models / "slots.json").read_text())["active"] == "b"
    finally:
        cluster.stop()
        server.stop()
        broker.stop()
