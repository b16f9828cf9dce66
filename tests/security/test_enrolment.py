"""Enrolment tokens are single-use, expire, are bound to the device they name, and never stored in
the clear; on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import Session

from control_plane import enrolment
from control_plane.broker_auth import acl_text, password_file_text
from control_plane.core.db import make_engine, upgrade
from control_plane.models import EnrolmentToken, MqttUser
from control_plane.tokens import split_token


@pytest.fixture
def engine(database_url: str):
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _token(engine, device_id: str | None = None, ttl_s: float = 60, tags=()) -> str:
    with Session(engine) as session:
        return enrolment.create_token(session, device_id=device_id, tags=list(tags), ttl_s=ttl_s)[1]


def _enrol(engine, token: str, device_id: str):
    with Session(engine) as session:
        return enrolment.enrol(session, token=token, device_id=device_id)


def _code(engine, token: str, device_id: str) -> str:
    with pytest.raises(enrolment.EnrolmentError) as err:
        _enrol(engine, token, device_id)
    return err.value.code


def test_token_is_single_use_and_stored_hashed(engine):
    token = _token(engine, "hub-1", tags=["site:berlin"])
    user, password = _enrol(engine, token, "hub-1")
    assert (user.username, user.kind, user.tags) == ("hub-1", "device", ["site:berlin"])
    assert enrolment.password_matches(password, user.password_hash) and password not in user.password_hash
    assert _code(engine, token, "hub-1") == "invalid_token"
    token_id, secret = split_token(token, enrolment.TOKEN_PREFIX)  # the secret may hold "_" itself
    with Session(engine) as session:
        row = session.get(EnrolmentToken, token_id)
        assert row.used_by == "hub-1" and row.used_at is not None
        assert secret not in row.secret_hash


def test_concurrent_redemptions_enrol_once(engine):
    token = _token(engine)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda i: _try(engine, token, f"racer-{i}"), range(8)))
    assert sorted(outcomes).count("ok") == 1, outcomes
    assert set(outcomes) == {"ok", "invalid_token"}


def _try(engine, token, device_id) -> str:
    try:
        _enrol(engine, token, device_id)
        return "ok"
    except enrolment.EnrolmentError as exc:
        return exc.code


def test_expired_unknown_and_forged_tokens_are_refused(engine):
    expired = _token(engine, ttl_s=0.01)
    time.sleep(0.05)
    assert _code(engine, expired, "late") == "invalid_token"
    good = _token(engine)
    prefix, token_id, secret = good.split("_", 2)
    for bad in ("", "garbage", f"{prefix}_{token_id}_{secret}x", f"vft_{token_id}_{secret}", f"{prefix}_{'0' * 16}_x"):
        assert _code(engine, bad, "dev") == "invalid_token", bad
    _enrol(engine, good, "dev")  # the forgeries did not use it up


def test_token_binds_the_device_it_names_and_ids_cannot_be_taken(engine):
    named = _token(engine, "hub-7")
    assert _code(engine, named, "hub-8") == "wrong_device"
    _, first_password = _enrol(engine, named, "hub-7")
    # An open token cannot take an enrolled id ...
    assert _code(engine, _token(engine), "hub-7") == "device_taken"
    # ... nor a control plane's login.
    with Session(engine) as session:
        enrolment.ensure_control_user(session, username="control", password="pw")
    assert _code(engine, _token(engine), "control") == "device_taken"
    assert _code(engine, _token(engine, "control"), "control") == "device_taken"
    # A token made for the id re-enrols it (a replaced box): the old password stops working.
    with Session(engine) as session:
        assert enrolment.revoke(session, device_id="hub-7").revoked_at is not None
    user, second_password = _enrol(engine, _token(engine, "hub-7"), "hub-7")
    assert user.revoked_at is None
    assert enrolment.password_matches(second_password, user.password_hash)
    assert not enrolment.password_matches(first_password, user.password_hash)


def test_broker_files_hold_active_logins_and_own_topics_only(engine):
    _enrol(engine, _token(engine, "a"), "a")
    _enrol(engine, _token(engine, "b"), "b")
    with Session(engine) as session:
        enrolment.ensure_control_user(session, username="control", password="pw")
        enrolment.revoke(session, device_id="b")
        users = enrolment.active_users(session)
        assert [u.username for u in users] == ["a", "control"]
        assert session.get(MqttUser, "b").revoked_at is not None
    passwd, acl = password_file_text(users), acl_text(users)
    assert [line.split(":")[0] for line in passwd.splitlines()] == ["a", "control"]
    assert "b" not in acl.split() and "vf/v1/dev/b/" not in acl
    a_rules = acl.split("user a\n")[1].split("\n\n")[0].splitlines()
    assert sorted(a_rules) == sorted([f"topic read vf/v1/dev/a/{k}" for k in ("job", "cancel", "ota", "reminder")]
                                     + [f"topic write vf/v1/dev/a/{k}" for k in ("state", "telemetry", "event")])
    assert "user control\ntopic readwrite vf/v1/#" in acl
