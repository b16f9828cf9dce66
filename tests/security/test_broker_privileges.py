"""A broker started as root drops to the ``mosquitto`` user, and must still read the files the
control plane rewrites after each SIGHUP (otherwise it refuses every login)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from brokersec import CONTROL_PASSWORD, CONTROL_USER, connect
from sqlmodel import Session

from control_plane import enrolment
from control_plane.broker_auth import BrokerFiles
from control_plane.core.db import make_engine, upgrade
from voicefleet.broker import find_mosquitto, free_port
from voicefleet.processes import terminate


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop happens only when the broker starts as root")
def test_files_written_by_root_stay_readable_by_the_broker_user(tmp_path: Path):
    pwd.getpwnam("mosquitto")  # Debian's package makes this user
    # Not under pytest's tmp dirs: those sit in a 0700 root folder the broker user cannot enter.
    folder = Path(tempfile.mkdtemp(prefix="voicefleet-broker-"))
    folder.chmod(0o755)
    engine = make_engine(f"sqlite:///{tmp_path}/cp.db")
    upgrade(str(engine.url))
    files = BrokerFiles(folder, folder / "mosquitto.pid")
    with Session(engine) as session:
        enrolment.ensure_control_user(session, username=CONTROL_USER, password=CONTROL_PASSWORD)
    files.sync(engine)  # no broker yet: written, nobody told
    port = free_port()
    (folder / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {folder}/passwd\n"
        f"acl_file {folder}/acl\nuser mosquitto\npersistence false\nlog_dest stderr\n")
    with open(tmp_path / "broker.log", "wb") as log:
        proc = subprocess.Popen([find_mosquitto(), "-c", str(folder / "mosquitto.conf")], stdout=log, stderr=log)
    (folder / "mosquitto.pid").write_text(str(proc.pid))
    try:
        control = connect(f"mqtt://127.0.0.1:{port}", CONTROL_USER, CONTROL_PASSWORD)
        assert control.connected.is_set(), (tmp_path / "broker.log").read_text()
        control.stop()
        with Session(engine) as session:  # a device enrols: files rewritten by root, broker reloads as mosquitto
            _, token = enrolment.create_token(session, device_id="dev-a", tags=[], ttl_s=60)
            _, password = enrolment.enrol(session, token=token, device_id="dev-a")
        files.sync(engine)
        device = connect(f"mqtt://127.0.0.1:{port}", "dev-a", password)
        assert device.connected.is_set(), (tmp_path / "broker.log").read_text()
        assert device.publish("vf/v1/dev/dev-a/state") in ("Success", "No matching subscribers")
        device.stop()
        assert "Reloading config" in (tmp_path / "broker.log").read_text()
        assert oct((folder / "passwd").stat().st_mode & 0o777) == "0o640"
    finally:
        terminate(proc, 10)
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)
