"""One client must not hurt another, on real parts (control plane, Mosquitto, an agent process):
what every device would refuse is refused at submit with the code the devices give, and a failure
the request caused never counts against the device that reported it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from services import http, new_cluster, wait_job

from voicefleet.broker import MosquittoBroker
from voicefleet.credentials import auth_headers
from voicefleet.text.speakable import unspeakable
from voicefleet_cli.onebox import Cluster

# One agent is a chain: eSpeak NG (zh, en, Cantonese; voices default, male, female) and the
# benchmark's timed engine speaking Japanese with its one default voice. Each engine is offered on its
# own, so a Japanese job in eSpeak's "female" voice is refused at submit: no one engine speaks both.
JAPANESE_FEMALE = {"text": "こんにちは", "lang": "ja", "voice": "female"}
# The other agent runs the student alone, the best Mandarin voice here, so Mandarin goes to it; its
# frontend reads Han characters only, so Latin letters as Mandarin fail on the device with
# ``bad_text``: a failure that is the request's, not the device's.
LATIN_AS_MANDARIN = {"text": "hello world", "lang": "zh"}


@pytest.fixture(scope="module")
def cluster(mqtt_broker: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp_path: Path = tmp_path_factory.mktemp("request-faults")
    c = new_cluster(tmp_path, mqtt_broker.url)
    c.device, c.student = f"edge-{c.tag}", f"student-{c.tag}"
    try:
        c.start_control_plane()
        c.start_agent(c.device, engine="espeak,timed", VOICEFLEET_TIMED_LANGUAGES="ja", VOICEFLEET_TIMED_RTF="0")
        c.start_agent(c.student, engine="student")
        yield c
    finally:
        c.stop()


def client(c: Cluster, name: str) -> httpx.Client:
    r = http.post(f"{c.api}/v1/tokens", json={"name": name, "role": "client"})
    assert r.status_code == 201, r.text
    return httpx.Client(base_url=c.api, headers=auth_headers(r.json()["token"]), timeout=30)


def test_one_clients_bad_requests_do_not_close_the_device_to_others(cluster: Cluster):
    alice, bob = client(cluster, "alice"), client(cluster, "bob")
    failed = []
    for _ in range(6):  # more than the health gate's minimum (5 attempts, half of them failed)
        r = alice.post("/v1/jobs", json=LATIN_AS_MANDARIN)
        assert r.status_code == 201, r.text
        failed.append(wait_job(cluster.api, r.json()["id"]))
    for job in failed:
        assert job["state"] == "failed" and job["error_code"] == "bad_text", job
        assert job["device_id"] == cluster.student, job
        tries = [e for e in job["events"] if e["kind"] == "attempt_failed"]
        assert len(tries) == 1, f"a request's fault was retried: {job['events']}"  # every device would refuse it
    devices = http.get(f"{cluster.api}/v1/devices").json()
    assert [d["gate"] for d in devices if d["id"] == cluster.student] == [None], devices
    r = bob.post("/v1/jobs", json={"text": "今天下午三点开会"})
    assert r.status_code == 201, f"bob was refused because of alice's requests: {r.text}"
    job = wait_job(cluster.api, r.json()["id"])
    assert job["state"] == "done" and job["device_id"] == cluster.student, job


def test_a_voice_and_a_language_no_one_engine_offers_together_are_refused_at_submit(cluster: Cluster):
    r = http.post(f"{cluster.api}/v1/jobs", json=JAPANESE_FEMALE)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unservable", r.text
    assert "from one engine" in r.json()["error"]["text"], r.text


@pytest.mark.parametrize("body, field, code", [
    ({"text": "👍👍👍"}, "text", "nothing_to_speak"),
    ({"text": "。。！？"}, "text", "nothing_to_speak"),
    ({"text": "[laughter]"}, "text", "nothing_to_speak"),
    ({"text": " \n "}, "text", "empty_text"),
    ({"text": "hello", "lang": "en", "dialect": "yue"}, "dialect", "unsupported"),
    ({"text": "hello", "lang": "en", "dialect": "Cantonese"}, "dialect", "unsupported"),
    ({"text": "hello", "lang": "en", "dialect": "auto", "region": "广州"}, "dialect", "unsupported"),
    ({"text": "hello", "lang": "en", "instruction": "用粤语说"}, "instruction", "unsupported"),
])
def test_submit_refuses_what_every_device_would_refuse(cluster: Cluster, body: dict, field: str, code: str):
    before = len(http.get(f"{cluster.api}/v1/jobs", params={"limit": 1000}).json())
    for path, payload, where in (("/v1/jobs", body, field), ("/v1/jobs/batch", {"jobs": [{"text": "好"}, body]},
                                                             f"jobs.1.{field}")):
        r = http.post(f"{cluster.api}{path}", json=payload)
        assert r.status_code == 422, r.text
        error = r.json()
        assert error["error"]["text"].startswith(f"{where}: "), error
        assert [d["type"] for d in error["detail"]] == [code], error
        assert error["error"]["code"] == code, error  # the devices' own code for it, on every path
        if field == "text":
            assert error["error"]["text"] == f"{where}: {unspeakable(body['text']).text}"
        else:
            assert 'lang "zh"' in error["error"]["text"] and "English" in error["error"]["text"], error
    assert len(http.get(f"{cluster.api}/v1/jobs", params={"limit": 1000}).json()) == before


@pytest.mark.parametrize("body", [
    {"text": "👍 好的"},  # speech among emoji
    {"text": "[h][ǎo]"},  # pinyin is speech
    {"text": "你好", "dialect": "yue"},
    {"text": "hello", "lang": "en", "instruction": "开心地说"},  # not a dialect: unservable here, not invalid
])
def test_submit_still_takes_what_a_device_can_speak(cluster: Cluster, body: dict):
    r = http.post(f"{cluster.api}/v1/jobs", json=body)
    if "instruction" in body:  # no engine here follows instructions: refused as unservable, not as invalid
        assert r.status_code == 422 and r.json()["error"]["code"] == "unservable", r.text
        return
    assert r.status_code == 201, r.text
    assert wait_job(cluster.api, r.json()["id"])["state"] == "done"
