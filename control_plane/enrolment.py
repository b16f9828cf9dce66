"""Device enrolment: one-time tokens, per-device MQTT logins, revocation (docs/security.md).

An admin makes an enrolment token (``vfe_<id>_<secret>``; only sha256 of the secret is kept), which
may name the device id and the tags the device gets. The device redeems it once, before it
expires, and receives its MQTT username (its device id) and a random password. The password is
returned once and kept only as Mosquitto's PBKDF2-SHA512 ``$7$`` hash, so the broker's password file
is written straight from the database (control_plane/broker_auth.py). Control planes log in as
``control`` users, which the broker lets use all of ``vf/v1/#``.

Data functions only: they take a session, raise EnrolmentError, and know nothing of HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import update
from sqlmodel import Session, select

from control_plane.models import EnrolmentToken, MqttUser
from control_plane.tokens import hash_secret, new_token, split_token
from voicefleet.errors import CodedError
from voicefleet.ids import now

TOKEN_PREFIX = "vfe"
HASH_ITERATIONS = 101  # what mosquitto_passwd writes; the broker checks each login with it
SALT_BYTES = 12


class EnrolmentError(CodedError):
    """A token or device that cannot be enrolled; ``code`` for machines, ``text`` says what to do."""


def _invalid() -> EnrolmentError:
    # One answer for every bad token: a caller learns nothing about which tokens exist.
    return EnrolmentError("invalid_token", "the enrolment token is unknown, already used or expired; "
                                           "ask an admin for a new one")


# ---------------------------------------------------------------------------------- hashes


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS) -> str:
    """Mosquitto 2's password-file hash: ``$7$<iterations>$<b64 salt>$<b64 PBKDF2-SHA512>``."""
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_matches(password: str, hashed: str) -> bool:
    try:
        _, seven, iterations, salt, _ = hashed.split("$")
        expected = mosquitto_hash(password, salt=base64.b64decode(salt), iterations=int(iterations))
    except ValueError:
        return False
    return seven == "7" and hmac.compare_digest(expected, hashed)


# ---------------------------------------------------------------------------------- tokens


def create_token(session: Session, *, device_id: str | None, tags: list[str], ttl_s: float
                 ) -> tuple[EnrolmentToken, str]:
    """A new one-time token; its plain form is returned once and never stored."""
    token_id, secret, token = new_token(TOKEN_PREFIX)
    row = EnrolmentToken(id=token_id, secret_hash=hash_secret(secret), device_id=device_id, tags=list(tags),
                         expires_at=now() + ttl_s)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row, token


def list_tokens(session: Session) -> list[EnrolmentToken]:
    return list(session.exec(select(EnrolmentToken).order_by(EnrolmentToken.created_at)).all())


def _redeemable(session: Session, token: str) -> EnrolmentToken:
    token_id, secret = split_token(token, TOKEN_PREFIX) or ("", "")
    row = session.get(EnrolmentToken, token_id) if token_id else None
    if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
        raise _invalid()
    if row.used_at is not None or row.expires_at < now():
        raise _invalid()
    return row


# ------------------------------------------------------------------------------- enrolment


def enrol(session: Session, *, token: str, device_id: str) -> tuple[MqttUser, str]:
    """Redeem ``token`` for ``device_id``: (its MQTT user, the password, given only now)."""
    row = _redeemable(session, token)
    if row.device_id is not None and row.device_id != device_id:
        raise EnrolmentError("wrong_device", f"this token enrols device {row.device_id!r}, not {device_id!r}; "
                                             f"set VOICEFLEET_DEVICE_ID={row.device_id}")
    user = session.get(MqttUser, device_id)
    if user is not None and (user.kind != "device" or row.device_id is None):
        # Only a token made for this very id may replace an existing login (re-enrolling a device).
        raise EnrolmentError("device_taken", f"{device_id!r} is already enrolled; use another device id, or "
                                             "ask an admin for a token naming this id to re-enrol it")
    claimed = session.execute(update(EnrolmentToken).where(EnrolmentToken.id == row.id,
                                                           EnrolmentToken.used_at.is_(None))
                              .values(used_at=now(), used_by=device_id))
    if claimed.rowcount != 1:  # redeemed by a concurrent request a moment ago
        session.rollback()
        raise _invalid()
    password = secrets.token_urlsafe(24)
    user = user or MqttUser(username=device_id, kind="device", password_hash="")
    user.password_hash, user.tags, user.token_id = mosquitto_hash(password), list(row.tags), row.id
    user.created_at, user.revoked_at = now(), None
    session.add(user)
    session.commit()
    session.refresh(user)
    return user, password


def revoke(session: Session, *, device_id: str) -> MqttUser | None:
    """Take a device's login away (the broker files must then be rewritten); None if never enrolled."""
    user = session.get(MqttUser, device_id)
    if user is None or user.kind != "device":
        return None
    if user.revoked_at is None:
        user.revoked_at = now()
        session.add(user)
        session.commit()
        session.refresh(user)
    return user


def ensure_control_user(session: Session, *, username: str, password: str) -> None:
    """Register a control plane's own broker login (a replica starting with a new password updates it)."""
    user = session.get(MqttUser, username)
    if user is not None and user.kind != "control":
        raise EnrolmentError("device_taken", f"MQTT user {username!r} is an enrolled device; give the control "
                                             "plane another VOICEFLEET_MQTT_USERNAME")
    if user is not None and user.revoked_at is None and password_matches(password, user.password_hash):
        return
    user = user or MqttUser(username=username, kind="control", password_hash="")
    user.password_hash, user.revoked_at = mosquitto_hash(password), None
    session.add(user)
    session.commit()


def active_users(session: Session) -> list[MqttUser]:
    return list(session.exec(select(MqttUser).where(MqttUser.revoked_at.is_(None))
                             .order_by(MqttUser.username)).all())


def list_users(session: Session) -> list[MqttUser]:
    return list(session.exec(select(MqttUser).order_by(MqttUser.username)).all())
