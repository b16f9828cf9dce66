"""API tokens and roles on a real control plane: who may submit, cancel, read jobs and hear their
audio; tokens stored hashed, revoked at once, rate-limited; signed URLs for agents."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs

import httpx
import pytest
from services import ADMIN_TOKEN, http, wait_job
from sqlalchemy import create_engine, text

from control_plane.signed_urls import signature_ok, signed_query
from voicefleet.credentials import auth_headers
from voicefleet_cli.onebox import Cluster


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/voicefleet.db"


# Routes whose request carries its own credential instead of an API token.
OPEN_WITH_OWN_CREDENTIAL = {"/v1/enrol", "/v1/models/{model_id}/versions/{version}/signed/{exp}/{sig}/{name}"}


def token(c: Cluster, role: str, **extra) -> httpx.Client:
    r = http.post(f"{c.api}/v1/tokens", json={"name": f"test {role}", "role": role, **extra})
    assert r.status_code == 201, r.text
    return httpx.Client(base_url=c.api, headers=auth_headers(r.json()["token"]), timeout=30)


def test_every_route_but_health_needs_a_valid_token(cluster: Cluster):
    """Every operation the OpenAPI document lists, called without a token or with a wrong one."""
    for path in ("/healthz", "/readyz"):
        assert httpx.get(f"{cluster.api}{path}").status_code == 200
    paths = http.get(f"{cluster.api}/openapi.json").json()["paths"]
    checked = 0
    for path, ops in paths.items():
        if path in ("/healthz", "/readyz"):
            continue
        if path in OPEN_WITH_OWN_CREDENTIAL:  # the enrolment token / the URL's signature is the credential
            url = cluster.api + re.sub(r"\{[^}]+\}", "x", path)
            refused = httpx.request(next(iter(ops)), url, json={"token": "vfe_x_y", "device_id": "d"})
            assert refused.status_code in (401, 403, 422), (path, refused.status_code, refused.text)
            continue
        url = cluster.api + re.sub(r"\{[^}]+\}", "x", path)
        for method in ops:
            for headers in ({}, auth_headers("vft_0123456789abcdef_wrong")):
                r = httpx.request(method, url, json={"text": "你好"}, headers=headers)
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert "token" in r.json()["error"]["text"]
            checked += 1
    assert checked >= 15 and "/v1/tokens" in paths and "/metrics" in paths


def test_roles_decide_who_submits_cancels_and_hears_audio(cluster: Cluster):
    viewer, alice, bob, operator = (token(cluster, r) for r in ("viewer", "client", "client", "operator"))
    refused = viewer.post("/v1/jobs", json={"text": "你好"})
    assert refused.status_code == 403 and "client" in refused.json()["error"]["text"]

    job_id = alice.post("/v1/jobs", json={"text": "今天下午三点开会"}).json()["id"]
    assert wait_job(cluster.api, job_id)["state"] == "done"
    assert viewer.post(f"/v1/jobs/{job_id}/cancel").status_code == 403
    assert alice.get(f"/v1/jobs/{job_id}/audio").content[:4] == b"RIFF"
    assert operator.get(f"/v1/jobs/{job_id}/audio").content[:4] == b"RIFF"
    assert viewer.get(f"/v1/jobs/{job_id}").status_code == 200  # viewers see jobs, not audio
    assert viewer.get(f"/v1/jobs/{job_id}/audio").status_code == 403
    # Another client learns nothing of it: not its audio, not even that it exists.
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/audio"):
        assert bob.get(path).status_code == 404
    assert bob.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
    assert [j["id"] for j in alice.get("/v1/jobs").json()] == [job_id]
    assert bob.get("/v1/jobs").json() == []
    assert job_id in [j["id"] for j in viewer.get("/v1/jobs").json()]
    # Only admins manage tokens.
    assert operator.post("/v1/tokens", json={"name": "x", "role": "admin"}).status_code == 403
    assert alice.get("/v1/tokens/me").json()["role"] == "client"


def test_tokens_are_stored_hashed_and_revocation_is_immediate(cluster: Cluster, database_url: str):
    made = http.post(f"{cluster.api}/v1/tokens", json={"name": "ci", "role": "viewer"}).json()
    secret = made["token"].split("_", 2)[2]
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("select * from apitoken")).all()
    engine.dispose()
    assert len(rows) == 2  # the bootstrap admin and this one
    assert not any(secret in str(row) or ADMIN_TOKEN.split("_", 2)[2] in str(row) for row in rows)
    client = httpx.Client(base_url=cluster.api, headers=auth_headers(made["token"]))
    assert client.get("/v1/devices").status_code == 200
    assert http.delete(f"{cluster.api}/v1/tokens/{made['id']}").json()["revoked_at"] is not None
    assert client.get("/v1/devices").status_code == 401


def test_a_token_over_its_rate_gets_429_with_retry_after(cluster: Cluster):
    slow = token(cluster, "viewer", rate_per_s=1, burst=3)
    codes = [slow.get("/v1/devices").status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
    limited = slow.get("/v1/devices")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    time.sleep(1.1)
    assert slow.get("/v1/devices").status_code == 200
    assert all(http.get(f"{cluster.api}/v1/devices").status_code == 200 for _ in range(20))  # others unaffected


def test_signed_urls_open_one_path_until_they_expire(cluster: Cluster):
    secret = b"k" * 32
    q = parse_qs(signed_query(secret, "/v1/voices/v1/audio", ttl_s=60))
    exp, sig = q["exp"][0], q["sig"][0]
    assert signature_ok(secret, "/v1/voices/v1/audio", exp, sig)
    assert not signature_ok(secret, "/v1/voices/v2/audio", exp, sig)  # another path
    assert not signature_ok(b"x" * 32, "/v1/voices/v1/audio", exp, sig)  # another key
    assert not signature_ok(secret, "/v1/voices/v1/audio", str(int(exp) + 1), sig)  # a longer life
    assert not signature_ok(secret, "/v1/voices/v1/audio", "\u00b9", sig)  # a digit to str, not to int()
    old = parse_qs(signed_query(secret, "/p", ttl_s=-1))
    assert not signature_ok(secret, "/p", old["exp"][0], old["sig"][0])
    # On the API: a prompt clip needs a token or the URL's signature (a wrong one is refused).
    assert httpx.get(f"{cluster.api}/v1/voices/nobody/audio").status_code == 401
    forged = httpx.get(f"{cluster.api}/v1/voices/nobody/audio", params={"exp": exp, "sig": sig})
    assert forged.status_code == 401


def _upload(client: httpx.Client, seed: int) -> httpx.Response:
    import io

    import soundfile as sf

    from benchmarks.signals import speechlike

    buf = io.BytesIO()
    sf.write(buf, speechlike(5.0, seed=seed), 24_000, format="WAV", subtype="PCM_16")
    return client.post("/v1/voices", files={"file": ("me.wav", buf.getvalue(), "audio/wav")}, timeout=60,
                       data={"transcript": "今天天气很好", "consent": "the speaker agreed in writing, release #7"})


def test_a_clients_voices_are_its_own_to_see_and_to_speak_with(cluster: Cluster):
    """Voices belong to the subject that uploaded them, as jobs do: another client finds nothing (404,
    not 403), cannot name them in a job (an unknown voice), and its own upload of the same clip is
    its own voice; operators, admins and viewers see every voice, operators speak with any."""
    pytest.importorskip("resemblyzer")
    import uuid

    cloner = f"cloner-{uuid.uuid4().hex[:6]}"  # the timed engine advertising cloning: a CosyVoice3 stand-in
    cluster.start_agent(cloner, role="cloud", engine="timed", VOICEFLEET_TIMED_CLONING="1",
                        VOICEFLEET_TIMED_RTF="0.001")
    alice, bob, operator, viewer = (token(cluster, r) for r in ("client", "client", "operator", "viewer"))
    mine = _upload(alice, seed=41)
    assert mine.status_code == 201, mine.text
    voice = mine.json()["id"]

    def prompt_ids(client: httpx.Client) -> list[str]:
        return [v["id"] for v in client.get("/v1/voices", params={"kind": "prompt"}).json()]

    assert prompt_ids(alice) == [voice]
    assert prompt_ids(bob) == [] and all(v["kind"] == "preset" for v in bob.get("/v1/voices").json())
    for path in (f"/v1/voices/{voice}", f"/v1/voices/{voice}/similar"):
        hidden = bob.get(path)
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found", (path, hidden.text)
        assert alice.get(path).status_code == 200, path
    assert bob.get(f"/v1/voices/{voice}/audio").status_code == 403  # the clip: operators and signed URLs only
    for reader in (operator, viewer):
        assert voice in prompt_ids(reader) and reader.get(f"/v1/voices/{voice}").json()["consent"]

    # The same clip from bob is bob's own voice: it does not hand him alice's (id, transcript, consent).
    again = _upload(bob, seed=41)
    assert again.status_code == 201 and again.json()["id"] != voice, again.text
    assert prompt_ids(bob) == [again.json()["id"]]
    assert [r["voice"]["id"] for r in bob.get(f"/v1/voices/{again.json()['id']}/similar").json()] == []
    assert prompt_ids(alice) == [voice]

    refused = bob.post("/v1/jobs", json={"text": "你好", "voice": voice})
    assert refused.status_code == 422 and f"unknown voice {voice!r}" in refused.json()["error"]["text"], refused.text
    for client in (alice, operator):
        job = client.post("/v1/jobs", json={"text": "你好", "voice": voice})
        assert job.status_code == 201, job.text
        done = wait_job(cluster.api, job.json()["id"])
        assert (done["state"], done["device_id"], done["voice"]) == ("done", cloner, voice)


def _routes(routes, prefix: str = "") -> list[tuple[str, str]]:
    """(path, method) of every route the app serves, those FastAPI adds itself (the schema, the
    docs pages) and those of included routers alike."""
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += _routes(included.routes, prefix + route.include_context.prefix)
            continue
        found += [(prefix + route.path, m) for m in sorted((getattr(route, "methods", None) or set()) - {"HEAD"})]
    return found


def _documented_open_paths(doc: str, opening: str) -> set[str]:
    """The paths a document's paragraph on tokens names as answering without one."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / doc).read_text()
    paragraph = text[text.index(opening):].split("\n\n", 1)[0]
    return set(re.findall(r"`(/[^`\s]*)`", paragraph))


def test_only_the_probes_and_the_apis_description_answer_without_a_token(cluster: Cluster, tmp_path):
    """Every route of the app, those the OpenAPI document leaves out included: the probes, the
    API's description (schema, Swagger UI, ReDoc: no data) and the console's page (its sign-in form:
    no data) answer anyone, the rest 401, and README
    and docs/security.md name exactly the open ones."""
    from control_plane.app import create_app
    from control_plane.core.config import Settings

    app = create_app(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path}/routes.db"))
    answered_anyone, checked = set(), 0
    for path, method in _routes(app.routes):
        if path in OPEN_WITH_OWN_CREDENTIAL:  # the enrolment token / the URL's signature: the test above
            continue
        r = httpx.request(method, cluster.api + re.sub(r"\{[^}]+\}", "x", path), json={"text": "你好"})
        assert r.status_code in (200, 401), (method, path, r.status_code, r.text)
        if r.status_code == 200:
            answered_anyone.add(path)
        checked += 1
    assert checked > 40
    assert answered_anyone == {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
                               "/console"}
    assert _documented_open_paths("README.md", "Every API call") == answered_anyone
    assert _documented_open_paths("docs/security.md", "Every route of the control plane's HTTP API") == answered_anyone
