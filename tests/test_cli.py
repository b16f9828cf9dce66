"""The README's user path: `voicefleet say` against a running system writes real speech."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import wave

import httpx
import pytest
from services import wait_for

from voicefleet.broker import free_port
from voicefleet.credentials import api_token, auth_headers
from voicefleet_cli.onebox import Cluster


@pytest.fixture
def database_url(tmp_path) -> str:
    """The CLI talks HTTP only: one database kind is enough here."""
    return f"sqlite:///{tmp_path}/voicefleet.db"


def say(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voicefleet_cli", "--api", cluster.api, "say", *args],
                          capture_output=True, text=True, timeout=120)


def test_say_writes_a_valid_wav(cluster: Cluster, tmp_path):
    for extra, name in (([], "zh"), (["--dialect", "yue"], "yue"), (["--lang", "en"], "en")):
        out = tmp_path / f"{name}.wav"
        text = "Remind me at three" if name == "en" else "今天下午三点提醒我开会"
        run = say(cluster, text, "-o", str(out), *extra)
        assert run.returncode == 0, run.stderr
        with wave.open(str(out)) as w:  # the header was rewritten with the real length
            assert w.getframerate() == 22050 and w.getnframes() > 22050
            assert w.getnframes() * 2 + 44 == out.stat().st_size


def test_say_reports_bad_input_clearly(cluster: Cluster, tmp_path):
    run = say(cluster, "你好", "--dialect", "klingon", "-o", str(tmp_path / "x.wav"))
    assert run.returncode == 2 and "unknown dialect 'klingon'" in run.stderr


def test_jobs_and_devices_commands(cluster: Cluster):
    cli = [sys.executable, "-m", "voicefleet_cli", "--api", cluster.api]
    devices = subprocess.run([*cli, "devices"], capture_output=True, text=True, timeout=30)
    assert cluster.edge_id in devices.stdout and "online" in devices.stdout
    jobs = subprocess.run([*cli, "jobs"], capture_output=True, text=True, timeout=30)
    assert jobs.returncode == 0


# ----------------------------------------------------------------------------- `voicefleet up`


class OneBox:
    """``voicefleet up`` as a user runs it: its own home and port, its own secured broker."""

    def __init__(self, home, port: int):
        self.home, self.api = home, f"http://127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEFLEET_")}
        self.env.update(VOICEFLEET_HOME=str(home), VOICEFLEET_HTTP_PORT=str(port))
        self.proc: subprocess.Popen | None = None
        self.out = home / "up.out"

    def start(self) -> str:
        """Start ``up`` and wait until it says it is up; what it printed."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "voicefleet_cli", "up"], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: "voicefleet is up" in self.out.read_text() or self.proc.poll() is not None,
                 "`voicefleet up` to come up or stop", 120)
        text = self.out.read_text()
        assert self.proc.poll() is None, f"`up` stopped:\n{text[-3000:]}"
        return text

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(90)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "voicefleet_cli", "--api", self.api, *args], env=self.env,
                              capture_output=True, text=True, timeout=120)

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, headers=auth_headers(api_token(self.home, {})), timeout=30)


def test_up_heals_after_its_admin_token_and_an_agent_login_were_revoked(tmp_path):
    """An admin revokes the admin token `up` keeps and edge-1's broker login; `up` starts again, says
    what it mended, and speaks through edge-1 again; `devices` shows a cordon and `uncordon` lifts it."""
    box = OneBox(tmp_path / "home", free_port())
    try:
        box.start()
        with box.admin() as api:
            assert api.post("/v1/devices/edge-1/revoke").status_code == 200
            me = api.get("/v1/tokens/me").json()
            assert api.delete(f"/v1/tokens/{me['id']}").json()["revoked_at"] is not None
        box.stop()
        said = box.start()
        assert "admin token in" in said and "was revoked" in said, said
        assert "edge-1: its broker login had been revoked" in said, said
        with box.admin() as api:
            wait_for(lambda: {d["id"]: d["eligible"] for d in api.get("/v1/devices").json()}.get("edge-1"),
                     "edge-1 to take jobs again")
            # edge-1 alone can serve this: cloud-1 is cordoned, and `devices` says so
            assert api.post("/v1/devices/cloud-1/cordon").json()["cordoned"] is True
        devices = box.cli("devices")
        lines = {line.split()[0]: line for line in devices.stdout.splitlines()}
        assert "cordoned" in lines["cloud-1"] and "gate:" in lines["cloud-1"], devices.stdout
        assert "eligible" in lines["edge-1"], devices.stdout
        run = box.cli("say", "你好", "-o", str(tmp_path / "x.wav"), "--timeout", "60")
        assert run.returncode == 0 and "on edge-1" in run.stdout, run.stdout + run.stderr
        run = box.cli("uncordon", "cloud-1")
        assert run.returncode == 0 and "cloud-1" in run.stdout and "cordoned" not in run.stdout, run.stdout
    finally:
        box.stop()


def test_a_revoked_token_in_the_environment_is_named(tmp_path):
    """A token `up` did not make is not `up`'s to replace: it stops and names the variable."""
    box = OneBox(tmp_path / "home", free_port())
    try:
        box.start()
        with box.admin() as api:
            made = api.post("/v1/tokens", json={"name": "mine", "role": "admin"}).json()
            assert api.delete(f"/v1/tokens/{made['id']}").status_code == 200
        box.stop()
        box.env["VOICEFLEET_TOKEN"] = made["token"]
        with open(box.out, "w") as out:
            box.proc = subprocess.Popen([sys.executable, "-m", "voicefleet_cli", "up"], env=box.env,
                                        stdout=out, stderr=subprocess.STDOUT)
        assert box.proc.wait(120) == 1
        text = box.out.read_text()
        assert "error: the API token in VOICEFLEET_TOKEN was refused" in text and "Traceback" not in text, text
    finally:
        box.stop()


def test_a_cluster_whose_port_is_taken_before_it_binds_starts_on_another(tmp_path, mqtt_broker, monkeypatch):
    """The port a cluster picks can be taken by another process before its control plane binds it
    (parallel test workers do that): the control plane starts again on a new one."""
    import socket

    from voicefleet_cli import onebox

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = iter([taken.getsockname()[1], free_port()])
    monkeypatch.setattr(onebox, "free_port", lambda: next(picks))
    cluster = Cluster(tmp_path / "home", mqtt_url=mqtt_broker.url,
                      env={"VOICEFLEET_DATABASE_URL": f"sqlite:///{tmp_path}/vf.db"})
    try:
        assert cluster.api.endswith(f":{taken.getsockname()[1]}")
        cluster.start_control_plane()
        assert not cluster.api.endswith(f":{taken.getsockname()[1]}")
        assert httpx.get(f"{cluster.api}/readyz").json()["ready"]
        assert b"address already in use" in (tmp_path / "home" / "control-plane.log").read_bytes()
    finally:
        cluster.stop()
        taken.close()
