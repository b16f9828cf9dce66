"""The rollout state machine in a real control-plane process on Mosquitto (SQLite, and PostgreSQL
where durability matters), with simulated devices: ``benchmarks.rollout.SimFleet``, real MQTT
clients that download the bundle over HTTP and check its hashes, standing in for edge devices'
updaters (the real ones are covered by tests/rollout/test_fleet_rollout.py)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from services import ADMIN_TOKEN, new_cluster, wait_for

from benchmarks.rollout import SimFleet, make_bundle, signing_key
from voicefleet.credentials import auth_headers

ENDED = ("completed", "halted", "rolled_back", "aborted")


class Plane:
    """A control plane, a registry holding versions 2.0.0 and 3.0.0, and simulated devices on 1.0.0."""

    def __init__(self, tmp_path: Path, mqtt_url: str, devices: int, database_url: str | None = None,
                 tags=lambda d: []):
        key, public = signing_key(tmp_path / "keys")
        self.cluster = new_cluster(tmp_path, mqtt_url, database_url=database_url, VOICEFLEET_TRUSTED_KEYS=public)
        self.cluster.start_control_plane()
        self.model = f"sim-{self.cluster.tag}"  # its own: the broker is shared with other tests
        self.api = httpx.Client(base_url=self.cluster.api, headers=auth_headers(ADMIN_TOKEN), timeout=30)
        for version in ("2.0.0", "3.0.0"):
            archive = make_bundle(tmp_path / "bundles", key, model_id=self.model, version=version, size=20_000)
            assert self.api.post("/v1/models", content=archive.read_bytes()).status_code == 201
        self.ids = [f"d{i:02d}-{self.cluster.tag}" for i in range(devices)]
        self.fleet = SimFleet(mqtt_url, self.ids, model_id=self.model, version="1.0.0", tags=tags,
                              workers=8).start()
        wait_for(lambda: len(self.api.get(f"/v1/models/{self.model}/devices").json()) == devices, "devices registered")

    def start(self, version: str, **fields) -> dict:
        answer = self.api.post("/v1/rollouts", json={"model_id": self.model, "version": version, **fields})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def get(self, rollout_id: str) -> dict:
        return self.api.get(f"/v1/rollouts/{rollout_id}").json()

    def wait(self, rollout_id: str, *states: str, timeout_s: float = 30) -> dict:
        states = states or ENDED
        return wait_for(lambda: (r := self.get(rollout_id))["state"] in states and r, f"rollout in {states}",
                        timeout_s)

    def events(self, rollout_id: str) -> list[dict]:
        return self.api.get(f"/v1/rollouts/{rollout_id}/events").json()

    def stop(self) -> None:
        self.fleet.stop()
        self.cluster.stop()


@pytest.fixture
def plane(tmp_path: Path, mqtt_broker, request):
    made: list[Plane] = []

    def make(devices: int, **kw) -> Plane:
        made.append(Plane(tmp_path, mqtt_broker.url, devices, **kw))
        return made[-1]

    yield make
    for p in made:
        p.stop()


def test_canary_then_waves_complete_within_selector_and_limits(plane, database_url: str):
    site = {i: "site:berlin" if i % 4 else "site:paris" for i in range(8)}
    pl = plane(8, database_url=database_url, tags=lambda d: [site[int(d[1:3])], "hw:sim"])
    berlin = [d for i, d in enumerate(pl.ids) if i % 4]
    r = pl.start("2.0.0", selector={"tags": ["site:berlin"]},
                 plan={"canary": 2, "waves": [50, 100], "soak_s": 0.3, "max_in_flight": 2})
    assert sum(r["targets"].values()) == 6 and sum(d["phase"] == 0 for d in r["devices"]) == 2
    done = pl.wait(r["id"])
    assert done["state"] == "completed", done
    assert {d: v for d, v in pl.fleet.versions().items()} == {d: "2.0.0" if d in berlin else "1.0.0" for d in pl.ids}

    events = pl.events(r["id"])
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "created" and kinds[-1] == "completed"
    assert [e["detail"]["phase"] for e in events if e["kind"] == "phase_started"] == [0, 1, 2]
    phase_of = {d["device_id"]: d["phase"] for d in done["devices"]}
    # A phase starts only after every device of the one before activated and the phase soaked.
    for e in (e for e in events if e["kind"] == "phase_started" and e["detail"]["phase"] > 0):
        phase = e["detail"]["phase"]
        before = [x for x in events if x["kind"] == "device_activated" and phase_of[x["device_id"]] < phase]
        assert len(before) == sum(p < phase for p in phase_of.values())
        assert all(x["id"] < e["id"] and e["ts"] - x["ts"] >= 0.3 - 0.05 for x in before)
    inflight = peak = 0
    for e in events:  # never more than max_in_flight installs at once
        inflight += {"device_sent": 1, "device_activated": -1, "device_failed": -1}.get(e["kind"], 0)
        peak = max(peak, inflight)
    assert peak == 2
    running = {d["device_id"]: d["version"] for d in pl.api.get(f"/v1/models/{pl.model}/devices").json()}
    assert running == pl.fleet.versions()


def test_broken_bundle_halts_after_the_canaries_and_leaves_every_device_on_the_old_version(plane):
    pl = plane(6)
    pl.fleet.broken_versions.add("3.0.0")
    r = pl.start("3.0.0", plan={"canary": 2, "waves": [100], "soak_s": 0, "max_in_flight": 5})
    done = pl.wait(r["id"])
    assert done["state"] == "halted" and "test synthesis failed" in done["reason"], done
    assert done["targets"] == {"failed": 2, "skipped": 4}
    assert set(pl.fleet.versions().values()) == {"1.0.0"}
    sent = {e["device_id"] for e in pl.events(r["id"]) if e["kind"] == "device_sent"}
    assert sent == {d["device_id"] for d in done["devices"] if d["phase"] == 0}  # the wave never started
    assert "voicefleet_rollouts_halted_total 1.0" in pl.api.get("/metrics").text  # what the halt alert watches


def test_job_error_rate_on_updated_devices_halts_and_rolls_them_back(plane):
    pl = plane(4)
    pl.fleet.bad_job_versions.add("2.0.0")
    r = pl.start("2.0.0", plan={"canary": 2, "waves": [100], "soak_s": 60, "max_in_flight": 4,
                                "gates": {"max_error_rate": 0.2, "min_jobs": 3}})
    wait_for(lambda: pl.get(r["id"])["soak_until"], "the canaries updated and soaking")
    # One batch: the scheduler spreads it over the fleet's free slots; the jobs on the canaries fail.
    answer = pl.api.post("/v1/jobs/batch", json={"jobs": [{"text": "你好"}] * 16})
    assert answer.status_code in (200, 201, 202), answer.text
    done = pl.wait(r["id"])
    assert done["state"] == "halted" and "gate error_rate" in done["reason"], done
    assert done["targets"] == {"rolled_back": 2, "skipped": 2}
    assert set(pl.fleet.versions().values()) == {"1.0.0"}
    kinds = [e["kind"] for e in pl.events(r["id"])]
    assert kinds.index("halted") < kinds.index("device_rollback") < kinds.index("device_rolled_back")


def test_a_busy_device_is_asked_again_later_and_bad_requests_are_refused(plane):
    pl = plane(2)
    pl.fleet.busy_once.add(pl.ids[0])
    r = pl.start("2.0.0", plan={"canary_ids": [pl.ids[0]], "waves": [100], "soak_s": 0, "retry_s": 1})
    done = pl.wait(r["id"])
    assert done["state"] == "completed" and set(pl.fleet.versions().values()) == {"2.0.0"}, done
    canary = [e["kind"] for e in pl.events(r["id"]) if e["device_id"] == pl.ids[0]]
    assert canary[:2] == ["device_sent", "device_pending"] and canary.count("device_sent") == 2
    refused = [({"version": "9.9.9"}, 404), ({"selector": {"device_ids": ["nobody"]}}, 422),
               ({"plan": {"canary_ids": ["nobody"]}}, 422), ({"plan": {"waves": [50, 80]}}, 422)]
    for fields, status in refused:
        answer = pl.api.post("/v1/rollouts", json={"model_id": pl.model, "version": "3.0.0", **fields})
        assert answer.status_code == status, (fields, answer.text)
    assert pl.api.get("/v1/rollouts", params={"state": "running"}).json() == []  # nothing half-made


def test_rtf_regression_against_the_previous_version_halts(plane):
    pl = plane(4)
    first = pl.start("2.0.0", plan={"canary": 1, "waves": [100], "soak_s": 0, "max_in_flight": 4})
    assert pl.wait(first["id"])["state"] == "completed"
    pl.fleet.figures["3.0.0"] = {"rtf": 0.2, "first_chunk_s": 0.08, "audio_s": 4.0}  # 4x slower than 2.0.0
    r = pl.start("3.0.0", plan={"canary": 1, "waves": [100], "soak_s": 5, "max_in_flight": 4})
    done = pl.wait(r["id"])
    assert done["state"] == "halted" and "gate rtf" in done["reason"] and "4.00x" in done["reason"], done
    assert set(pl.fleet.versions().values()) == {"2.0.0"}


def test_survives_a_control_plane_restart_mid_wave_and_an_offline_device_catches_up(plane, database_url: str):
    pl = plane(6, database_url=database_url)
    away = pl.ids[-1]
    pl.fleet.devices[away].disconnect()
    wait_for(lambda: pl.cluster.device_status(away) == "offline", "the device seen offline")
    r = pl.start("2.0.0", plan={"canary": 1, "waves": [50, 100], "soak_s": 1.0, "max_in_flight": 1})
    wait_for(lambda: pl.get(r["id"])["phase"] == 1, "the first wave", 30)
    pl.cluster.control.kill()  # SIGKILL mid-wave: nothing gets to say goodbye
    pl.cluster.control.wait()
    pl.cluster.start_control_plane()
    waiting = wait_for(lambda: (x := pl.get(r["id"]))["phase"] == 2 and x["targets"].get("activated") == 5 and x,
                       "the others updated", 30)
    time.sleep(1.5)  # past the last soak: it still waits for the device that is away
    assert pl.get(r["id"])["state"] == "running" and waiting["targets"].get("pending") == 1
    assert pl.fleet.versions()[away] == "1.0.0"
    pl.fleet.devices[away].connect()
    done = pl.wait(r["id"])
    assert done["state"] == "completed" and set(pl.fleet.versions().values()) == {"2.0.0"}, done
    assert "device_sent" in [e["kind"] for e in pl.events(r["id"]) if e["device_id"] == away]


def test_a_command_lost_before_a_restart_goes_out_again_at_start(plane):
    """The command a control plane committed but never got to publish (killed in between) is sent
    again when it starts (and hears the device's state), not after command_timeout_s."""
    pl = plane(2)
    lost = pl.ids[0]
    pl.fleet.deaf_once.add(lost)
    r = pl.start("2.0.0", plan={"canary_ids": [lost], "waves": [100], "soak_s": 0, "command_timeout_s": 600})
    wait_for(lambda: pl.get(r["id"])["targets"].get("sent") == 1, "the install sent")
    time.sleep(1.0)
    assert pl.get(r["id"])["targets"] == {"sent": 1, "pending": 1}  # it never arrived
    pl.cluster.control.kill()
    pl.cluster.control.wait()
    pl.cluster.start_control_plane()
    done = pl.wait(r["id"], timeout_s=20)
    assert done["state"] == "completed" and set(pl.fleet.versions().values()) == {"2.0.0"}, done
    assert "resent" in [e["kind"] for e in pl.events(r["id"]) if e["device_id"] == lost]


def test_operator_pause_resume_pin_abort_and_rollback(plane):
    pl = plane(5)
    pinned = pl.ids[0]
    pin = pl.api.put(f"/v1/models/{pl.model}/pins/{pinned}", json={"version": "1.0.0"})
    assert pin.status_code == 200 and pin.json()["pinned_version"] == "1.0.0"
    r = pl.start("2.0.0", plan={"canary": 1, "waves": [100], "soak_s": 0.5, "max_in_flight": 1})
    assert {d["device_id"]: d["state"] for d in r["devices"]}[pinned] == "skipped"
    busy = pl.api.post("/v1/rollouts", json={"model_id": pl.model, "version": "3.0.0"})
    assert busy.status_code == 409  # one rollout of a model at a time
    paused = pl.api.post(f"/v1/rollouts/{r['id']}/pause", json={"reason": "lunch"}).json()
    assert paused["state"] == "paused" and paused["reason"] == "lunch"
    time.sleep(2.0)
    settled = pl.get(r["id"])["targets"]
    time.sleep(1.0)
    assert pl.get(r["id"])["targets"] == settled and settled.get("pending", 0) >= 2  # nothing new while paused
    assert pl.api.post(f"/v1/rollouts/{r['id']}/resume").json()["state"] == "running"
    done = pl.wait(r["id"])
    assert done["state"] == "completed"
    assert pl.fleet.versions() == {d: "1.0.0" if d == pinned else "2.0.0" for d in pl.ids}

    back = pl.api.post(f"/v1/rollouts/{r['id']}/rollback").json()
    assert back["state"] == "rolling_back"
    assert pl.wait(r["id"])["state"] == "rolled_back"
    assert set(pl.fleet.versions().values()) == {"1.0.0"}
    # Unpinned and pinned to 3.0.0: it installs at once, outside any rollout.
    pl.api.delete(f"/v1/models/{pl.model}/pins/{pinned}")
    pl.api.put(f"/v1/models/{pl.model}/pins/{pinned}", json={"version": "3.0.0"})
    wait_for(lambda: pl.fleet.versions()[pinned] == "3.0.0", "the pinned device on its pin")

    second = pl.start("3.0.0", plan={"canary_ids": [pl.ids[1]], "waves": [100], "soak_s": 30, "max_in_flight": 5})
    wait_for(lambda: pl.get(second["id"])["soak_until"], "the canary soaking")
    aborted = pl.api.post(f"/v1/rollouts/{second['id']}/abort").json()
    assert aborted["state"] == "aborted" and aborted["targets"] == {"activated": 2, "skipped": 3}  # the pinned one too
    assert sorted(pl.fleet.versions().values()) == ["1.0.0"] * 3 + ["3.0.0"] * 2
    assert pl.api.post(f"/v1/rollouts/{second['id']}/resume").status_code == 409
