"""The audit log on the real app (Mosquitto, and SQLite and PostgreSQL, in-process): every state-changing
call under /v1 is recorded with who made it, its action, target and status, refusals and sign-ins
included; reads and POST /v1/pronounce are not; only admins read it; a record that cannot be written
costs the call nothing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlmodel import Session, select
from test_console_session import admin_client, browser, new_token, signed_in

from control_plane.audit import AuditWriter, write
from control_plane.core.db import upgrade
from control_plane.models import AuditEntry
from voicefleet.broker import MosquittoBroker
from voicefleet.credentials import auth_headers


@pytest.fixture
def api(database_url: str, mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[TestClient]:
    with admin_client(database_url, mqtt_broker, tmp_path) as client:
        yield client


def audit(api: TestClient, **params) -> list[dict]:
    answer = api.get("/v1/audit", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def brief(entry: dict) -> tuple:
    return entry["method"], entry["path"], entry["action"], entry["target"], entry["status"], entry["subject"]


def test_actions_refusals_and_sign_ins_are_recorded_newest_first(api: TestClient):
    assert audit(api) == []  # reads are not recorded: the log starts empty
    operator = new_token(api, "operator")
    page, session = signed_in(api, "operator")  # a second operator token, signed in
    page_subject = session["subject"]
    assert browser(api).post("/v1/session", json={"token": "vft_0123456789abcdef_wrong"}).status_code == 401
    assert page.post("/v1/devices/edge-1/cordon").status_code == 403  # no CSRF token: a forged call
    assert page.post("/v1/devices/edge-1/cordon", headers={"X-CSRF-Token": session["csrf"]}).status_code == 404
    as_operator = auth_headers(operator["token"])
    assert api.post("/v1/devices/edge-2/drain", headers=as_operator).status_code == 404
    assert browser(api).post("/v1/jobs", json={"text": "你好"}).status_code == 401  # no credential at all
    assert api.post("/v1/tokens", json={"name": "", "role": "admin"}).status_code == 422
    # Not recorded: reads, and POST /v1/pronounce (it changes nothing).
    assert page.get("/v1/devices").status_code == 200 and page.get("/v1/session").status_code == 200
    assert api.post("/v1/pronounce", json={"text": "银行"}).status_code == 200

    entries = audit(api)
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    admin_subject = entries[-1]["subject"]  # the first call: the admin made the operator's token
    assert [brief(e) for e in entries] == [
        ("POST", "/v1/tokens", "create_token", {}, 422, admin_subject),
        ("POST", "/v1/jobs", "submit_job", {}, 401, None),
        ("POST", "/v1/devices/edge-2/drain", "drain", {"device_id": "edge-2"}, 404, operator["subject"]),
        ("POST", "/v1/devices/edge-1/cordon", "cordon", {"device_id": "edge-1"}, 404, page_subject),
        ("POST", "/v1/devices/edge-1/cordon", "cordon", {"device_id": "edge-1"}, 403, page_subject),
        ("POST", "/v1/session", "sign_in", {}, 401, None),
        ("POST", "/v1/session", "sign_in", {}, 200, page_subject),
        ("POST", "/v1/tokens", "create_token", {}, 201, admin_subject),  # the signed-in operator's token
        ("POST", "/v1/tokens", "create_token", {}, 201, admin_subject),
    ]
    signed = entries[-3]
    assert (signed["token_id"], signed["role"]) == (session["token_id"], "operator")
    assert entries[1]["token_id"] is None and entries[1]["role"] is None
    assert all(e["at"] > 0 for e in entries)

    # Filters and paging.
    assert [e["status"] for e in audit(api, subject=page_subject)] == [404, 403, 200]
    assert {e["path"] for e in audit(api, path_prefix="/v1/devices")} == {"/v1/devices/edge-1/cordon",
                                                                         "/v1/devices/edge-2/drain"}
    first, second = audit(api, limit=4), audit(api, limit=100, before_id=entries[3]["id"])
    assert first == entries[:4] and second == entries[4:]
    assert audit(api, path_prefix="/v1/devices/edge_") == []  # LIKE's wildcards are plain characters here


def test_only_admins_read_the_audit_log(api: TestClient):
    for role in ("operator", "viewer", "client"):
        refused = api.get("/v1/audit", headers=auth_headers(new_token(api, role)["token"]))
        assert refused.status_code == 403 and "admin" in refused.json()["error"]["text"], (role, refused.text)
    page, _ = signed_in(api, "operator")
    assert page.get("/v1/audit").status_code == 403
    admin_page, _ = signed_in(api, "admin")
    assert admin_page.get("/v1/audit").status_code == 200
    assert browser(api).get("/v1/audit").status_code == 401
    for bad in ({"limit": 0}, {"limit": 1001}, {"before_id": 0}, {"subject": "a b"}, {"path_prefix": "v1"}):
        assert api.get("/v1/audit", params=bad).status_code == 422, bad


def test_a_record_that_cannot_be_written_costs_the_call_nothing(api: TestClient, database_url: str,
                                                                caplog: pytest.LogCaptureFixture):
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("drop table auditentry"))
    engine.dispose()
    with caplog.at_level(logging.WARNING, logger="control_plane.audit"):
        made = api.post("/v1/tokens", json={"name": "while the log is away", "role": "viewer"})
        api.app.state.services.audit.flush()  # its writer has tried
    assert made.status_code == 201, made.text
    assert "while the log is away" in [t["name"] for t in api.get("/v1/tokens").json()]
    assert any("not recorded, the first POST /v1/tokens (201)" in r.getMessage() for r in caplog.records), caplog.text


def test_writing_to_an_unreachable_database_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    engine = create_engine(f"sqlite:///{tmp_path}/no-such-dir/x.db")  # SQLite cannot open it
    with caplog.at_level(logging.WARNING, logger="control_plane.audit"):
        write(engine, [AuditEntry(method="POST", path="/v1/jobs", status=201)])
    assert "not recorded" in caplog.text


def test_the_writer_writes_everything_queued_before_a_flush_and_the_rest_on_close(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/audit.db"
    upgrade(url)
    engine = create_engine(url)
    writer = AuditWriter(engine)
    threads = [threading.Thread(target=lambda n=n: [writer.add(AuditEntry(method="POST", path=f"/v1/t{n}/{i}",
                                                                              status=201)) for i in range(300)])
               for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.flush()
    with Session(engine) as session:
        assert len(session.exec(select(AuditEntry)).all()) == 1200
    writer.add(AuditEntry(method="DELETE", path="/v1/last", status=204))
    writer.close()
    with Session(engine) as session:
        assert session.exec(select(AuditEntry).where(AuditEntry.path == "/v1/last")).one().status == 204
