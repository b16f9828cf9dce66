"""The Models and rollouts page in Debian's Chromium against a real control plane, with simulated
devices (``benchmarks.rollout.SimFleet``: real MQTT clients that download and hash the bundle, as in
tests/control_plane/test_rollouts.py) and signed bundles uploaded to its registry."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import axe_violations, make_token, sign_in
from services import http, new_cluster, wait_for

from benchmarks.rollout import SimFleet, signing_key
from voicefleet.broker import MosquittoBroker
from voicefleet.bundle import pack_archive, write_bundle
from voicefleet_cli.onebox import Cluster

EVALUATION = {"chosen": "int8", "sentences": 20,
              "int8": {"mcd_db": 4.6519, "speaker_similarity": 0.9054, "f0_rmse_cents": 267.3, "vuv_error": 0.033,
                       "rtf_1thread": 0.00641},
              "fp32": {"mcd_db": 4.588, "speaker_similarity": 0.9099}}


def bundle(folder: Path, key, model_id: str, version: str, mcd_db: float) -> Path:
    """A signed bundle archive of one small file, with evaluation figures in its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = folder / f"{version}.bin"
    blob.write_bytes(os.urandom(2000))
    evaluation = {**EVALUATION, "int8": {**EVALUATION["int8"], "mcd_db": mcd_db}}
    write_bundle(folder / f"{model_id}-{version}", {"model.bin": blob},
                 {"model_id": model_id, "version": version, "engine": "student-onnx", "languages": ["zh"],
                  "sample_rate": 16000, "licence": "test only", "evaluation": evaluation}, key)
    return pack_archive(folder / f"{model_id}-{version}", folder / f"{model_id}-{version}.tar.gz")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, mqtt_broker: MosquittoBroker) -> Iterator[Cluster]:
    """A control plane trusting a test key, holding version 2.0.0, and four devices on 1.0.0 (three in Berlin)."""
    tmp = tmp_path_factory.mktemp("rollouts")
    key, public = signing_key(tmp / "keys")
    cluster = new_cluster(tmp, mqtt_broker.url, VOICEFLEET_TRUSTED_KEYS=public)
    cluster.key, cluster.bundles, cluster.model = key, tmp / "bundles", f"ro-model-{cluster.tag}"
    cluster.ids = [f"ro{i}-{cluster.tag}" for i in range(4)]
    sims = None
    try:
        cluster.start_control_plane()
        archive = bundle(cluster.bundles, key, cluster.model, "2.0.0", mcd_db=4.6519)
        assert http.post(f"{cluster.api}/v1/models", content=archive.read_bytes()).status_code == 201
        sims = SimFleet(mqtt_broker.url, cluster.ids, model_id=cluster.model, version="1.0.0", workers=2,
                        tags=lambda d: ["site:paris" if d.startswith("ro3") else "site:berlin"]).start()
        wait_for(lambda: len(http.get(f"{cluster.api}/v1/models/{cluster.model}/devices").json()) == 4,
                 "the devices reporting their model")
        yield cluster
    finally:
        if sims is not None:
            sims.stop()
        cluster.stop()


def a_rollout(fleet: Cluster) -> dict:
    """The module's rollout (the form test makes it), or one made through the API for a test run alone."""
    rollouts = http.get(f"{fleet.api}/v1/rollouts").json()
    if rollouts:
        return rollouts[0]
    made = http.post(f"{fleet.api}/v1/rollouts", json={"model_id": fleet.model, "version": "2.0.0",
                                                        "selector": {"tags": ["site:berlin"]},
                                                        "plan": {"canary": 1, "waves": [50, 100], "soak_s": 600}})
    assert made.status_code == 201, made.text
    return made.json()


def test_upload_through_the_page_lists_the_version_with_its_evaluation(fleet: Cluster, context):
    page = sign_in(context, fleet.api, page_path="#/rollouts")
    page.wait_for_selector("#ro-versions")
    assert "4.65" in page.inner_text("#ro-versions")  # 2.0.0's MCD, of the variant it ships (int8)
    page.set_input_files("#ro-bundle", str(bundle(fleet.bundles, fleet.key, fleet.model, "3.0.0", mcd_db=3.21)))
    page.get_by_role("button", name="Upload").click()
    row = page.locator("#ro-versions tbody tr", has_text="3.0.0")
    row.wait_for()
    assert re.search(r"3\.0\.0\s+student-onnx\s+0\s+.*int8\s+3\.21\s+0\.905", row.inner_text()), row.inner_text()
    assert [v["version"] for v in http.get(f"{fleet.api}/v1/models", params={"model_id": fleet.model}).json()] == \
        ["2.0.0", "3.0.0"]
    assert page.problems == [], "\n".join(page.problems)


def test_create_a_rollout_from_its_preview_then_pause_it_and_see_it_change_live(fleet: Cluster, context):
    berlin = fleet.ids[:3]
    page = sign_in(context, fleet.api, page_path="#/rollouts")
    page.get_by_role("link", name="New rollout").click()
    page.wait_for_selector("#ro-form")
    page.select_option("#ro-version", "2.0.0")
    page.get_by_label("Tags (a device needs every one)").fill("site:berlin")
    page.get_by_label("Canary devices", exact=True).fill("1")
    page.get_by_label("Waves (cumulative %, the last 100)").fill("50, 100")
    page.get_by_label("Soak after each phase (s)").fill("600")
    # The preview, before anything is created: the canary, then one device per wave; Paris left out.
    page.wait_for_function("ids => [...document.querySelectorAll('#ro-preview li.device')].map(li => li.dataset.device)"
                           ".join() === ids.join()", arg=berlin)
    phases = page.eval_on_selector_all("#ro-preview ol.ro-phases > li", "ls => ls.map(l => [l.querySelector('h3')"
                                       ".innerText, [...l.querySelectorAll('li.device')].map(d => d.dataset.device)])")
    assert phases == [["Canary · 1", berlin[:1]], ["Wave 1 (up to 50 %) · 1", berlin[1:2]],
                      ["Wave 2 (up to 100 %) · 1", berlin[2:]]], phases
    assert http.get(f"{fleet.api}/v1/rollouts").json() == []  # the preview started nothing

    page.get_by_role("button", name="Start rollout").click()
    page.wait_for_selector("#ro-state")  # its own page
    rollout_id = page.evaluate("() => location.hash.split('/').pop()")
    created = http.get(f"{fleet.api}/v1/rollouts/{rollout_id}").json()
    assert (created["model_id"], created["version"], created["selector"]["tags"]) == (fleet.model, "2.0.0",
                                                                                   ["site:berlin"])
    assert created["plan"]["soak_s"] == 600 and created["plan"]["waves"] == [50, 100]
    # The canary's install is followed live: its row turns "updated" when its device reports.
    page.wait_for_function("id => document.querySelector(`tr[data-device='${id}']`)?.innerText.includes('updated')",
                           arg=berlin[0], timeout=30_000)
    assert page.inner_text("#ro-state") == "running"

    page.get_by_role("button", name="Pause").click()
    page.wait_for_function("() => document.querySelector('#ro-state').innerText === 'paused'")
    assert http.get(f"{fleet.api}/v1/rollouts/{rollout_id}").json()["state"] == "paused"
    assert page.get_by_role("button", name="Resume").is_visible()
    # Resumed elsewhere (here, the API): the page learns it from the event stream.
    assert http.post(f"{fleet.api}/v1/rollouts/{rollout_id}/resume").json()["state"] == "running"
    page.wait_for_function("() => document.querySelector('#ro-state').innerText === 'running'")
    assert page.get_by_role("button", name="Pause").is_visible()
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
    assert page.problems == [], "\n".join(page.problems)


def test_a_viewer_sees_rollouts_and_versions_without_any_control(fleet: Cluster, context):
    rollout = a_rollout(fleet)
    page = sign_in(context, fleet.api, token=make_token(fleet.api, "viewer"), page_path=f"#/rollouts/{rollout['id']}")
    page.wait_for_selector("#ro-gates tbody tr")
    assert page.locator("#ro-state").inner_text() in ("running", "paused")
    assert page.locator("main#page button").count() == 0
    page.goto(f"{fleet.api}/console#/rollouts")
    page.wait_for_selector("#ro-versions")
    assert page.locator("main#page button, main#page input, #ro-versions a").count() == 0  # no upload, no "Roll out"
    assert page.get_by_role("link", name="New rollout").count() == 0
    assert page.problems == [], "\n".join(page.problems)


def test_the_page_with_a_rollout_shown_has_no_serious_accessibility_violations(fleet: Cluster, context):
    rollout = a_rollout(fleet)
    page = sign_in(context, fleet.api, page_path=f"#/rollouts/{rollout['id']}")
    page.wait_for_selector("#ro-gates tbody tr")
    page.wait_for_selector("#ro-events li")
    assert axe_violations(page) == []
    for path in ("#/rollouts", "#/rollouts/new"):
        page.goto(f"{fleet.api}/console{path}")
        page.wait_for_selector("#ro-versions, #ro-preview li.device")
        assert axe_violations(page) == [], path
    # The form says that this model's rollout is under way (creating another would be refused).
    assert "one rollout of its model at a time" in page.locator("#ro-preview .warn-text").inner_text()
