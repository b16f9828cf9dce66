"""An operator's read-only observer login (the broker folder's ``observers`` file, docs/security.md):
it reads every device's traffic, may publish nothing, and the control plane keeps it through the
rewrites that enrolments and revocations make."""

from __future__ import annotations

import subprocess

from brokersec import Secured, connect

from voicefleet import protocol as p
from voicefleet.broker import OBSERVERS_FILE

NOT_AUTHORIZED = "Not authorized"


def test_observer_reads_everything_writes_nothing_and_survives_enrolments(secured: Secured):
    url = secured.broker.url
    observers = secured.broker.workdir / OBSERVERS_FILE
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(observers), "observer", "watch-it"], check=True)
    a = connect(url, "dev-a", secured.enrol("dev-a"))  # this enrolment's rewrite brings the observer in
    watcher = connect(url, "observer", "watch-it")
    b = None
    try:
        assert watcher.connected.is_set()
        assert watcher.subscribe("vf/#") == ["Granted QoS 1"]
        assert a.publish(p.device_topic("dev-a", "state"), b"a-state") == "Success"
        assert watcher.wait("message") == (p.device_topic("dev-a", "state"), b"a-state")
        # read-only: nothing it sends reaches anyone, to devices or as a device
        for topic in (p.device_topic("dev-a", "job"), p.device_topic("dev-a", "event"), "vf/v1/elsewhere"):
            assert watcher.publish(topic) == NOT_AUTHORIZED, topic

        # Another enrolment and a revocation rewrite both files and reload the broker: the observer
        # stays connected, and sees the new device.
        b = connect(url, "dev-b", secured.enrol("dev-b"))
        secured.revoke("dev-a")
        assert a.wait("disconnect", timeout_s=5.0) is not None, "the revoke did not reach the broker"
        assert watcher.connected.is_set() and watcher.wait("disconnect", timeout_s=0.5) is None
        assert b.publish(p.device_topic("dev-b", "telemetry"), b"b-tele") == "Success"
        assert watcher.wait("message") == (p.device_topic("dev-b", "telemetry"), b"b-tele")
    finally:
        for client in (a, b, watcher):
            if client is not None:
                client.stop()


def test_observer_file_cannot_take_a_device_login(secured: Secured):
    """A line naming an enrolled device is left out: the device's own password still works, the
    observer file's does not."""
    password = secured.enrol("dev-a")
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(secured.broker.workdir / OBSERVERS_FILE), "dev-a", "x"],
                   check=True)
    secured.enrol("dev-b")
    impostor = connect(secured.broker.url, "dev-a", "x", wait=False)
    try:
        assert impostor.wait("connect") == NOT_AUTHORIZED
    finally:
        impostor.stop()
    device = connect(secured.broker.url, "dev-a", password)
    device.stop()
