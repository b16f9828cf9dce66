"""The broker's password and ACL files, written from the database (docs/security.md).

When VOICEFLEET_BROKER_DIR is set, the control plane owns ``passwd`` and ``acl`` there: after every
enrolment or revocation (and at start) it rewrites both atomically (temp file + rename) and sends
the broker SIGHUP. Mosquitto 2.0 then re-reads them and disconnects every connected client whose
login is no longer in the password file (measured with 2.0.11), so revocation takes effect at
once; the per-user ACL lines go with the login, so nothing is left for a revoked device either.

Device D may read ``vf/v1/dev/D/{job,cancel,ota,reminder}`` and write ``vf/v1/dev/D/{state,telemetry,
event}``, nothing else; control planes may use all of ``vf/v1/#``.

Operators who watch the wire keep read-only logins in ``observers`` beside them (written with
``mosquitto_passwd``; the control plane never writes it): every rewrite copies them into ``passwd``
with ``topic read vf/#`` and nothing else, so they survive enrolments and revocations. A name that
is also a device or control plane login is left out (logged): the database's login wins.
"""

from __future__ import annotations

import fcntl
import grp
import logging
import os
import signal
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from control_plane import enrolment
from control_plane.models import MqttUser
from voicefleet import protocol as p
from voicefleet.broker import ACL_FILE, OBSERVERS_FILE, PASSWORD_FILE, PID_FILE
from voicefleet.files import write_atomic

log = logging.getLogger(__name__)
BROKER_GROUP = "mosquitto"  # Debian's broker drops to this user: the files must be readable by it


OBSERVER_READS = f"{p.TOPIC_ROOT.split('/')[0]}/#"  # vf/#: everything voicefleet says, read-only


def password_file_text(users: list[MqttUser], observers: list[tuple[str, str]] = ()) -> str:
    """``observers``: (username, hash) pairs from the observers file, after the database's logins."""
    return "".join(f"{u.username}:{u.password_hash}\n" for u in users) + "".join(
        f"{name}:{hashed}\n" for name, hashed in observers)


def acl_text(users: list[MqttUser], observers: list[tuple[str, str]] = ()) -> str:
    lines = ["# Written by the voicefleet control plane from its database and the observers file; "
             "edits here are overwritten."]
    for name, _ in observers:
        lines += ["", f"user {name}", f"topic read {OBSERVER_READS}"]
    for u in users:
        lines += ["", f"user {u.username}"]
        if u.kind == "control":
            lines.append(f"topic readwrite {p.TOPIC_ROOT}/#")
            continue
        lines += [f"topic read {p.device_topic(u.username, kind)}" for kind in p.TO_DEVICE]
        lines += [f"topic write {p.device_topic(u.username, kind)}" for kind in p.FROM_DEVICE]
    return "\n".join(lines) + "\n"


class BrokerFiles:
    """``passwd`` and ``acl`` in ``folder``, and the broker to tell (its pid is read from ``pid_file``)."""

    def __init__(self, folder: Path, pid_file: Path | None = None):
        self.folder = Path(folder)
        self.pid_file = Path(pid_file) if pid_file else self.folder / PID_FILE

    def sync(self, engine: Engine) -> None:
        """Write both files from the database and make the broker reload them. Serialised by a lock
        file, so that concurrent writers (threads, replicas sharing the folder) end with the newest."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with Session(engine) as session:
                users = enrolment.active_users(session)
            observers = self.observers(taken={u.username for u in users})
            _write(self.folder / PASSWORD_FILE, password_file_text(users, observers))
            _write(self.folder / ACL_FILE, acl_text(users, observers))
            self.reload()

    def observers(self, *, taken: set[str]) -> list[tuple[str, str]]:
        """The read-only logins in the observers file: (username, hash), less the names in ``taken``."""
        try:
            text = (self.folder / OBSERVERS_FILE).read_text()
        except FileNotFoundError:
            return []
        found = []
        for number, line in enumerate(text.splitlines(), 1):
            name, sep, hashed = line.strip().partition(":")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not (sep and name and hashed) or name in taken:
                why = "is a device or control plane login" if name in taken else "is not <name>:<hash>"
                log.warning("%s line %d left out: %s", self.folder / OBSERVERS_FILE, number, why)
                continue
            found.append((name, hashed))
        return found

    def reload(self) -> bool:
        """SIGHUP the broker; False (logged) when there is none to tell."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError, IndexError) as exc:
            log.warning("broker files written, but no broker reloaded them (pid file %s: %s)", self.pid_file, exc)
            return False
        log.info("broker %d reloads its logins and ACLs", pid)
        return True


def _write(path: Path, text: str) -> None:
    """Owner writes, the broker's group reads (Mosquitto drops to its own user), nobody else."""
    write_atomic(path, text, mode=0o640, owner=(0, _broker_gid()) if os.geteuid() == 0 else None)


def _broker_gid() -> int:
    try:
        return grp.getgrnam(BROKER_GROUP).gr_gid
    except KeyError:
        return 0


def from_settings(settings) -> BrokerFiles | None:
    """The files this control plane maintains, or None when it does not manage the broker's logins."""
    if settings.broker_dir is None:
        return None
    return BrokerFiles(settings.broker_dir, settings.broker_pid_file)


def install(settings, engine: Engine) -> BrokerFiles | None:
    """At start: register this control plane's own login, then write the files before it connects."""
    files = from_settings(settings)
    if files is None:
        return None
    login = settings.mqtt_login()
    if not login.password:
        raise RuntimeError("VOICEFLEET_BROKER_DIR is set, so the broker wants logins: set VOICEFLEET_MQTT_PASSWORD "
                           "(and VOICEFLEET_MQTT_USERNAME, default the control id) for the control plane")
    with Session(engine) as session:
        enrolment.ensure_control_user(session, username=login.username, password=login.password)
    files.sync(engine)
    return files
