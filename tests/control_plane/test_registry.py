"""The model registry through the real API of a control-plane process: uploads verified against the
trusted keys (refused when tampered, unsigned or signed by a stranger), versions listed with the
devices that run them, files served with HTTP Range, by token or by the signed folder URL only."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx
import pytest
from services import ADMIN_TOKEN, new_cluster, wait_for

from benchmarks.rollout import SimFleet, make_bundle, signing_key
from voicefleet.credentials import auth_headers

MODEL = "reg-model"


@pytest.fixture
def registry_plane(tmp_path: Path, mqtt_broker):
    key, public = signing_key(tmp_path / "keys")
    cluster = new_cluster(tmp_path, mqtt_broker.url, VOICEFLEET_TRUSTED_KEYS=public)
    cluster.start_control_plane()
    api = httpx.Client(base_url=cluster.api, headers=auth_headers(ADMIN_TOKEN), timeout=30)
    try:
        yield cluster, api, key
    finally:
        cluster.stop()


def test_upload_verifies_lists_and_serves_with_range(registry_plane, tmp_path: Path, mqtt_broker):
    cluster, api, key = registry_plane
    archive = make_bundle(tmp_path / "b", key, model_id=MODEL, version="2.0.0", size=300_000)
    created = api.post("/v1/models", content=archive.read_bytes())
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["model_id"], body["version"], body["devices"]) == (MODEL, "2.0.0", 0)
    names = {f["name"]: f for f in body["files"]}
    assert set(names) == {"model.bin", "manifest.json", "manifest.sig"} and names["model.bin"]["size"] == 300_000
    assert api.post("/v1/models", content=archive.read_bytes()).status_code == 200  # the same bytes again: no-op

    fleet = SimFleet(mqtt_broker.url, [f"reg-{cluster.tag}-{i}" for i in range(2)], model_id=MODEL,
                     version="2.0.0", tags=lambda d: ["site:test"]).start()
    try:
        listed = wait_for(lambda: [v for v in api.get("/v1/models", params={"model_id": MODEL}).json()
                                if v["devices"] == 2], "both devices reported")
        assert listed[0]["version"] == "2.0.0"
        running = api.get(f"/v1/models/{MODEL}/devices").json()
        assert [(d["version"], d["tags"]) for d in running] == [("2.0.0", ["site:test"])] * 2
    finally:
        fleet.stop()

    url = f"/v1/models/{MODEL}/versions/2.0.0/files/model.bin"
    whole = api.get(url)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes" and len(whole.content) == 300_000
    part = api.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == whole.content[1000:2000]
    assert part.headers["content-range"] == "bytes 1000-1999/300000"
    assert api.get(url, headers={"Range": "bytes=400000-"}).status_code == 416
    assert httpx.get(cluster.api + url).status_code == 401  # no token, no signature
    assert api.get(f"/v1/models/{MODEL}/versions/2.0.0/files/nope.bin").status_code == 404


def test_signed_folder_url_opens_the_files_of_one_version_only(registry_plane, tmp_path: Path):
    cluster, api, key = registry_plane
    for version in ("1.0.0", "2.0.0"):
        assert api.post("/v1/models", content=make_bundle(tmp_path / version, key, model_id=MODEL, version=version,
                                                          size=1000).read_bytes()).status_code == 201
    # The control plane's own signer, as an OtaCommand's base_url carries it.
    secret = (cluster.home / "url.secret").read_text().strip().encode()
    from control_plane.rollouts import Rollouts

    base = Rollouts(registry=None, api_url=cluster.api, url_secret=secret).files_url(MODEL, "2.0.0")
    assert httpx.get(f"{base}/model.bin").status_code == 200  # no token needed
    assert httpx.get(f"{base}/manifest.sig").content == api.get(
        f"/v1/models/{MODEL}/versions/2.0.0/files/manifest.sig").content
    other = base.replace("/versions/2.0.0/", "/versions/1.0.0/")
    assert httpx.get(f"{other}/model.bin").status_code == 403  # the signature covers 2.0.0 only
    forged = base[:-4] + ("0000" if not base.endswith("0000") else "1111")
    assert httpx.get(f"{forged}/model.bin").status_code == 403


def test_uploads_that_do_not_verify_are_refused(registry_plane, tmp_path: Path):
    cluster, api, key = registry_plane
    good = make_bundle(tmp_path / "good", key, model_id=MODEL, version="3.0.0", size=5000)

    tampered = _rewrite(good, tmp_path / "tampered.tar.gz", "model.bin", lambda b: b[:-1] + bytes([b[-1] ^ 1]))
    answer = api.post("/v1/models", content=tampered.read_bytes())
    assert answer.status_code == 422 and "checksum_mismatch" in answer.text

    unsigned = _rewrite(good, tmp_path / "unsigned.tar.gz", "manifest.sig", None)
    answer = api.post("/v1/models", content=unsigned.read_bytes())
    assert answer.status_code == 422 and "missing_signature" in answer.text

    stranger, _ = signing_key(tmp_path / "stranger")
    foreign = make_bundle(tmp_path / "foreign", stranger, model_id=MODEL, version="3.0.0", size=5000)
    answer = api.post("/v1/models", content=foreign.read_bytes())
    assert answer.status_code == 422 and "not trusted" in answer.text

    assert api.post("/v1/models", content=b"not an archive").status_code == 422
    escaping = make_bundle(tmp_path / "escaping", key, model_id="..", version="3.0.0", size=10)  # names a folder
    answer = api.post("/v1/models", content=escaping.read_bytes())
    assert answer.status_code == 422 and "bad_manifest" in answer.text
    assert api.get("/v1/models", params={"model_id": MODEL}).json() == []  # nothing was stored
    assert api.post("/v1/models", content=good.read_bytes()).status_code == 201
    other = make_bundle(tmp_path / "other", key, model_id=MODEL, version="3.0.0", size=6000)
    answer = api.post("/v1/models", content=other.read_bytes())
    assert answer.status_code == 409 and "never changes" in answer.text  # a version is immutable


def _rewrite(archive: Path, out: Path, name: str, change) -> Path:
    """A copy of ``archive`` with member ``name`` changed by ``change(bytes)`` (None drops it)."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == name:
                if change is None:
                    continue
                data = change(data)
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out

