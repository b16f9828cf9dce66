"""What the console's rollouts page asks, on a real control plane with simulated devices
(``benchmarks.rollout.SimFleet``): the devices a rollout would reach (POST /v1/rollouts/preview) in
the order it reaches them, each gate's figure against its bound (GET /v1/rollouts/{id}/gates), and
the registry's versions with their manifests (evaluation figures)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from services import ADMIN_TOKEN, http, new_cluster, wait_for

from benchmarks.rollout import SimFleet, make_bundle, signing_key
from voicefleet.credentials import auth_headers


@pytest.fixture
def plane(tmp_path: Path, mqtt_broker):
    """A control plane holding versions 2.0.0 and 3.0.0, and six devices on 1.0.0: d00, d02, d04 in Berlin,
    the rest in Paris."""
    key, public = signing_key(tmp_path / "keys")
    cluster = new_cluster(tmp_path, mqtt_broker.url, VOICEFLEET_TRUSTED_KEYS=public)
    cluster.start_control_plane()
    model = f"prev-{cluster.tag}"
    api = httpx.Client(base_url=cluster.api, headers=auth_headers(ADMIN_TOKEN), timeout=30)
    for version in ("2.0.0", "3.0.0"):
        archive = make_bundle(tmp_path / "bundles", key, model_id=model, version=version, size=1000)
        assert api.post("/v1/models", content=archive.read_bytes()).status_code == 201
    ids = [f"d{i:02d}-{cluster.tag}" for i in range(6)]
    fleet = SimFleet(mqtt_broker.url, ids, model_id=model, version="1.0.0",
                     tags=lambda d: ["site:berlin" if int(d[1:3]) % 2 == 0 else "site:paris"], workers=2).start()
    try:
        wait_for(lambda: len(api.get(f"/v1/models/{model}/devices").json()) == 6, "devices registered")
        yield cluster, api, model, ids, fleet
    finally:
        fleet.stop()
        cluster.stop()


def test_preview_lists_the_devices_in_the_order_the_rollout_reaches_them_and_starts_nothing(plane):
    cluster, api, model, ids, fleet = plane
    assert api.put(f"/v1/models/{model}/pins/{ids[4]}", json={"version": "1.0.0"}).status_code == 200
    spec = {"model_id": model, "version": "2.0.0", "selector": {"tags": ["site:berlin"], "device_ids": [ids[1]]},
            "plan": {"canary": 1, "waves": [50, 100], "soak_s": 600}}
    answer = api.post("/v1/rollouts/preview", json=spec)
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert (preview["targets"], preview["phases"]) == (4, 3)
    assert preview["plan"]["soak_s"] == 600 and preview["plan"]["max_in_flight"] == 10  # with its defaults
    assert [(d["device_id"], d["phase"]) for d in preview["devices"]] == [
        (ids[0], 0), (ids[1], 1), (ids[2], 1), (ids[4], 2)]
    assert all(d["online"] and d["version"] == "1.0.0" for d in preview["devices"])
    pinned = preview["devices"][-1]
    assert (pinned["state"], pinned["note"]) == ("skipped", "pinned to 1.0.0")
    assert api.get("/v1/rollouts").json() == []  # nothing started

    created = api.post("/v1/rollouts", json=spec)
    assert created.status_code == 201, created.text
    made = created.json()["devices"]  # the same phases (the canary may already have been sent its install)
    assert {d["device_id"]: d["phase"] for d in made} == {d["device_id"]: d["phase"] for d in preview["devices"]}
    assert [d["state"] for d in made if d["device_id"] == ids[4]] == ["skipped"]


def test_preview_says_what_creation_would_refuse_and_only_operators_ask(plane):
    cluster, api, model, ids, fleet = plane
    body = {"model_id": model, "version": "2.0.0"}
    for selector, code in (({"device_ids": ["nowhere"]}, "unknown_devices"), ({"tags": ["site:mars"]}, "no_targets")):
        preview = api.post("/v1/rollouts/preview", json={**body, "selector": selector})
        created = api.post("/v1/rollouts", json={**body, "selector": selector})
        assert preview.status_code == 200 and preview.json()["devices"] == [], preview.text
        assert preview.json()["refused"] == created.json()["error"] and created.json()["error"]["code"] == code
    bad = api.post("/v1/rollouts/preview", json={**body, "plan": {"waves": [50]}})
    assert bad.status_code == 422 and "the last 100" in bad.text
    viewer = http.post(f"{cluster.api}/v1/tokens", json={"name": "preview viewer", "role": "viewer"}).json()["token"]
    refused = httpx.post(f"{cluster.api}/v1/rollouts/preview", json=body, headers=auth_headers(viewer))
    assert refused.status_code == 403


def test_versions_list_with_their_manifests_when_asked(plane):
    cluster, api, model, ids, fleet = plane
    plain = api.get("/v1/models", params={"model_id": model}).json()
    assert [v["manifest"] for v in plain] == [None, None]
    full = api.get("/v1/models", params={"model_id": model, "manifest": "true"}).json()
    assert [v["manifest"]["version"] for v in full] == ["2.0.0", "3.0.0"] and "evaluation" in full[0]["manifest"]


def test_gates_give_each_figure_against_its_bound(plane):
    cluster, api, model, ids, fleet = plane
    first = api.post("/v1/rollouts", json={"model_id": model, "version": "2.0.0",
                                           "plan": {"canary": 1, "waves": [100], "soak_s": 0}}).json()
    wait_for(lambda: api.get(f"/v1/rollouts/{first['id']}").json()["state"] == "completed", "2.0.0 everywhere")
    fleet.figures["3.0.0"] = {"rtf": 0.1, "first_chunk_s": 0.08, "audio_s": 4.0}  # twice 2.0.0's RTF
    r = api.post("/v1/rollouts", json={"model_id": model, "version": "3.0.0", "plan": {
        "canary": 1, "waves": [100], "soak_s": 600, "gates": {"max_rtf_ratio": 3, "max_cer": None}}}).json()
    wait_for(lambda: api.get(f"/v1/rollouts/{r['id']}").json()["targets"].get("activated") == 1, "the canary updated")
    figures = {g["gate"]: g for g in api.get(f"/v1/rollouts/{r['id']}/gates").json()}
    assert figures["max_rtf_ratio"] == {"gate": "max_rtf_ratio", "limit": 3, "value": 2.0, "count": 1, "over": False}
    assert (figures["max_first_chunk_ratio"]["value"], figures["max_first_chunk_ratio"]["count"]) == (1.0, 1)
    assert (figures["max_failures"]["value"], figures["max_failures"]["limit"]) == (0, 0)
    assert (figures["max_error_rate"]["value"], figures["max_error_rate"]["count"]) == (None, 0)  # no job yet
    assert (figures["max_cer"]["limit"], figures["max_cer"]["value"]) == (None, None)  # judging off
    assert api.get("/v1/rollouts/nowhere/gates").status_code == 404
