"""The README's user path: `voicefleet say` against a running system writes real speech."""

from __future__ import annotations

import subprocess
import sys
import wave

import pytest

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
