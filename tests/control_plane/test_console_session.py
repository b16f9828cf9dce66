"""Console sign-in on the real app (Mosquitto, and SQLite and PostgreSQL, in-process): an API token
exchanged for an HttpOnly SameSite=Strict cookie that authenticates reads, changes that need the
session's CSRF token and the same origin, sign-out and token revocation that end the session."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from services import ADMIN_TOKEN
from sqlalchemy import create_engine, text

from control_plane.app import create_app
from control_plane.core.config import Settings
from voicefleet.broker import MosquittoBroker
from voicefleet.credentials import auth_headers


def admin_client(database_url: str, broker: MosquittoBroker, home: Path) -> TestClient:
    """The app, spoken to with the admin token; enter it to run the app's lifespan (once, for this client)."""
    settings = Settings(home=home, database_url=database_url, mqtt_url=broker.url,
                        control_id=f"cp-{uuid.uuid4().hex[:8]}", redis_url=None)
    return TestClient(create_app(settings), headers=auth_headers(ADMIN_TOKEN))


@pytest.fixture
def api(database_url: str, mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[TestClient]:
    with admin_client(database_url, mqtt_broker, tmp_path) as client:
        yield client


def new_token(api: TestClient, role: str) -> dict:
    made = api.post("/v1/tokens", json={"name": f"console {role}", "role": role})
    assert made.status_code == 201, made.text
    return made.json()


def browser(api: TestClient, scheme: str = "http", **cookies: str) -> TestClient:
    """A browser on the same app: no Authorization header, a cookie jar."""
    return TestClient(api.app, base_url=f"{scheme}://testserver", cookies=cookies)


def signed_in(api: TestClient, role: str) -> tuple[TestClient, dict]:
    page = browser(api)
    answer = page.post("/v1/session", json={"token": new_token(api, role)["token"]})
    assert answer.status_code == 200, answer.text
    return page, answer.json()


def token_names(api: TestClient) -> list[str]:
    return [t["name"] for t in api.get("/v1/tokens").json()]


def test_sign_in_sets_an_http_only_strict_cookie_and_keeps_only_its_hash(api: TestClient, database_url: str):
    made = new_token(api, "operator")
    answer = browser(api).post("/v1/session", json={"token": made["token"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["token_id"], body["subject"], body["role"]) == (made["id"], made["subject"], "operator")
    assert len(body["csrf"]) >= 32 and body["expires_at"] > 0
    cookie = answer.headers["set-cookie"]
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert cookie.startswith("vf_session=") and attributes.keys() >= {"httponly", "samesite", "path", "max-age"}
    assert attributes["samesite"] == "SameSite=Strict" and attributes["path"] == "Path=/"
    assert attributes["max-age"] == f"Max-Age={8 * 3600}" and "secure" not in attributes
    assert answer.headers["cache-control"] == "no-store"
    secret = cookie.split(";")[0].split("=", 1)[1]

    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("select id, token_id, csrf from consolesession")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(hashlib.sha256(secret.encode()).hexdigest(), made["id"], body["csrf"])]
    assert secret not in str(rows)

    over_https = browser(api, "https").post("/v1/session", json={"token": made["token"]})
    assert "; secure" in over_https.headers["set-cookie"].lower()


def test_the_cookie_authenticates_reads_and_gives_back_the_csrf_token(api: TestClient):
    page, session = signed_in(api, "viewer")
    assert page.get("/v1/devices").status_code == 200
    again = page.get("/v1/session")
    assert again.status_code == 200 and again.json() == session  # a reloaded page recovers its CSRF token
    for nobody in (browser(api), browser(api, vf_session="not-a-session")):
        refused = nobody.get("/v1/devices")
        assert refused.status_code == 401 and "POST /v1/session" in refused.json()["error"]["text"]
        assert nobody.get("/v1/session").status_code == 401
        assert nobody.delete("/v1/session").status_code == 401
    alone = api.get("/v1/session")  # an API token has no session to show
    assert alone.status_code == 401 and "sign in" in alone.json()["error"]["text"]


def test_a_change_with_the_cookie_needs_the_csrf_header_and_the_same_origin(api: TestClient):
    page, session = signed_in(api, "admin")
    before = token_names(api)
    for headers in ({}, {"X-CSRF-Token": "guessed"}, {"X-CSRF-Token": session["csrf"][:-1]}):
        refused = page.post("/v1/tokens", json={"name": "forged", "role": "admin"}, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "csrf" and "X-CSRF-Token" in refused.json()["error"]["text"]
    cross = page.post("/v1/tokens", json={"name": "forged", "role": "admin"},
                      headers={"X-CSRF-Token": session["csrf"], "Origin": "https://evil.example"})
    assert cross.status_code == 403 and cross.json()["error"]["code"] == "csrf", cross.text
    assert token_names(api) == before  # nothing was made

    made = page.post("/v1/tokens", json={"name": "from the console", "role": "viewer"},
                     headers={"X-CSRF-Token": session["csrf"], "Origin": "http://testserver"})
    assert made.status_code == 201, made.text
    assert token_names(api) == [*before, "from the console"]
    # A bearer token carries no ambient credential: its changes need no CSRF token.
    assert api.post("/v1/tokens", json={"name": "by bearer", "role": "viewer"}).status_code == 201


def test_sign_out_ends_the_session_and_clears_the_cookie(api: TestClient, database_url: str):
    page, session = signed_in(api, "operator")
    secret = page.cookies["vf_session"]
    assert page.delete("/v1/session").status_code == 403  # a change like any other: it needs the CSRF token
    assert page.get("/v1/devices").status_code == 200

    out = page.delete("/v1/session", headers={"X-CSRF-Token": session["csrf"]})
    assert out.status_code == 204, out.text
    assert out.headers["set-cookie"].startswith('vf_session=""') and "max-age=0" in out.headers["set-cookie"].lower()
    kept = browser(api, vf_session=secret)  # a copy of the cookie made before signing out
    assert kept.get("/v1/devices").status_code == 401
    assert kept.get("/v1/session").status_code == 401
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(text("select revoked_at from consolesession")).scalar_one() is not None
    engine.dispose()


def test_revoking_the_api_token_ends_its_sessions_at_once(api: TestClient):
    made = new_token(api, "operator")
    pages = [browser(api) for _ in range(2)]
    for page in pages:
        assert page.post("/v1/session", json={"token": made["token"]}).status_code == 200
        assert page.get("/v1/devices").status_code == 200
    assert api.delete(f"/v1/tokens/{made['id']}").status_code == 200
    for page in pages:
        ended = page.get("/v1/devices")
        assert ended.status_code == 401 and "revoked" in ended.json()["error"]["text"], ended.text
    assert browser(api).post("/v1/session", json={"token": made["token"]}).status_code == 401


def test_an_expired_session_is_refused(api: TestClient, database_url: str):
    page, _ = signed_in(api, "viewer")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("update consolesession set expires_at = 1"))
    engine.dispose()
    assert page.get("/v1/devices").status_code == 401
    assert page.get("/v1/session").status_code == 401


def test_a_viewers_session_may_not_act_as_an_operator(api: TestClient):
    page, session = signed_in(api, "viewer")
    refused = page.post("/v1/devices/edge-1/cordon", headers={"X-CSRF-Token": session["csrf"]})
    assert refused.status_code == 403 and "operator" in refused.json()["error"]["text"], refused.text
    operator, op_session = signed_in(api, "operator")
    # The role check passes: the device is unknown (no agent runs here), so the answer is its 404.
    assert operator.post("/v1/devices/edge-1/cordon", headers={"X-CSRF-Token": op_session["csrf"]}).status_code == 404


@pytest.mark.parametrize(("body", "headers", "status", "words"), [
    ({}, {}, 401, "send the API token"),
    ({"text": "你好"}, {}, 401, "send the API token"),  # no credential: the 401 of every route, not a 422
    ({"token": "vft_0123456789abcdef_wrong"}, {}, 401, "ask an admin"),
    ({"token": "not a token"}, {}, 401, "ask an admin"),
    ({"token": 7}, {}, 422, "token"),
    ({"token": ADMIN_TOKEN}, {"Origin": "https://evil.example"}, 403, "another site"),
])
def test_a_bad_sign_in_is_refused_and_sets_no_cookie(api: TestClient, body: dict, headers: dict, status: int,
                                                     words: str):
    refused = browser(api).post("/v1/session", json=body, headers=headers)
    assert refused.status_code == status and words in refused.json()["error"]["text"], refused.text
    assert "set-cookie" not in refused.headers


def test_a_session_counts_against_its_tokens_rate(api: TestClient):
    made = api.post("/v1/tokens", json={"name": "slow", "role": "viewer", "rate_per_s": 0.01, "burst": 2}).json()
    page = browser(api)
    assert page.post("/v1/session", json={"token": made["token"]}).status_code == 200
    assert page.get("/v1/devices").status_code == 200
    limited = page.get("/v1/devices")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert browser(api).post("/v1/session", json={"token": made["token"]}).status_code == 429


def test_the_session_routes_are_in_the_openapi_document(api: TestClient):
    doc = api.get("/openapi.json").json()
    ops = doc["paths"]["/v1/session"]
    assert ops["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("SessionPublic")
    assert "Set-Cookie" in ops["post"]["responses"]["200"]["headers"]
    assert {"401", "403", "429"} <= ops["post"]["responses"].keys()
    assert {"200", "401"} <= ops["get"]["responses"].keys()
    assert {"204", "401", "403"} <= ops["delete"]["responses"].keys()
    assert ops["delete"]["responses"]["403"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    cookie = [s for s in doc["components"]["securitySchemes"].values() if s.get("in") == "cookie"]
    assert [s["name"] for s in cookie] == ["vf_session"]
    assert doc["components"]["schemas"]["SessionPublic"]["required"] == ["token_id", "subject", "role", "csrf",
                                                                           "expires_at"]
