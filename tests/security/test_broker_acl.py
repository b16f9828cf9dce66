"""Each device may touch only its own topics, and a revoked device is cut off at once, on a real
Mosquitto reading the password and ACL files the control plane writes (MQTT 5 clients)."""

from __future__ import annotations

import subprocess

from brokersec import CONTROL_PASSWORD, CONTROL_USER, Secured, connect

from control_plane.enrolment import mosquitto_hash, password_matches
from voicefleet import protocol as p

NOT_AUTHORIZED = "Not authorized"
ACCEPTED = ("Success", "No matching subscribers")  # both PUBACKs say the broker took the message


def test_device_b_cannot_publish_or_read_on_device_a_topics(secured: Secured):
    url = secured.broker.url
    a = connect(url, "dev-a", secured.enrol("dev-a"))
    b = connect(url, "dev-b", secured.enrol("dev-b"))
    control = connect(url, CONTROL_USER, CONTROL_PASSWORD)
    try:
        assert control.subscribe("vf/v1/dev/+/#") == ["Granted QoS 1"]
        # B writes its own device-to-control topics; every one of A's is refused in the PUBACK.
        for kind in p.FROM_DEVICE:
            assert b.publish(p.device_topic("dev-b", kind)) == "Success", kind
            assert control.wait("message")[0] == p.device_topic("dev-b", kind)
        for kind in p.FROM_DEVICE + p.TO_DEVICE:
            assert b.publish(p.device_topic("dev-a", kind)) == NOT_AUTHORIZED, kind
        assert b.publish(p.device_topic("dev-b", "job")) == NOT_AUTHORIZED, "a device cannot give itself jobs"
        assert b.publish("vf/v1/elsewhere") == NOT_AUTHORIZED
        assert control.wait("message", timeout_s=0.5) is None, "a refused publish reached the control plane"

        # B's subscription to A's job topic is granted (MQTT 5 on Mosquitto 2.0) but delivers nothing.
        assert a.subscribe(p.device_topic("dev-a", "job")) == ["Granted QoS 1"]
        assert b.subscribe(p.device_topic("dev-a", "job")) == ["Granted QoS 1"]
        assert b.subscribe("vf/v1/#") == ["Granted QoS 1"]
        assert control.publish(p.device_topic("dev-a", "job"), b"for A") == "Success"
        assert a.wait("message") == (p.device_topic("dev-a", "job"), b"for A")
        assert b.wait("message", timeout_s=1.0) is None, "B read A's job"
    finally:
        for c in (a, b, control):
            c.stop()


def test_a_device_cannot_take_over_another_devices_session(secured: Secured):
    """The username is the client id: B connecting with A's client id does not kick A off."""
    url = secured.broker.url
    a = connect(url, "dev-a", secured.enrol("dev-a"))
    b = connect(url, "dev-b", secured.enrol("dev-b"), client_id="dev-a")
    try:
        assert b.connected.is_set()
        assert a.wait("disconnect", timeout_s=1.0) is None
        assert a.publish(p.device_topic("dev-a", "state")) in ACCEPTED
    finally:
        a.stop()
        b.stop()


def test_anonymous_and_wrong_passwords_are_refused(secured: Secured):
    secured.enrol("dev-a")
    for username, password in ((None, None), ("dev-a", "guess"), ("nobody", "x")):
        client = connect(secured.broker.url, username, password, client_id="intruder", wait=False)
        try:
            assert client.wait("connect") == NOT_AUTHORIZED, username
        finally:
            client.stop()


def test_revoked_device_is_cut_off_at_once(secured: Secured):
    url = secured.broker.url
    password = secured.enrol("dev-a")
    a = connect(url, "dev-a", password)
    control = connect(url, CONTROL_USER, CONTROL_PASSWORD)
    try:
        assert a.publish(p.device_topic("dev-a", "state")) in ACCEPTED
        secured.revoke("dev-a")
        # SIGHUP: Mosquitto re-reads the files and drops the connected client whose login is gone.
        assert a.wait("disconnect", timeout_s=2.0) is not None, "the revoked device is still connected"
        # paho keeps reconnecting: every attempt is refused.
        assert a.wait("connect", timeout_s=3.0) == NOT_AUTHORIZED
        assert not a.connected.is_set()
        again = connect(url, "dev-a", password, wait=False)
        assert again.wait("connect") == NOT_AUTHORIZED
        again.stop()
        assert control.connected.is_set(), "revoking a device must not disturb the control plane"
        assert control.publish(p.device_topic("dev-a", "job")) in ACCEPTED
    finally:
        a.stop()
        control.stop()


def test_password_hash_is_mosquittos(tmp_path):
    """Our $7$ hashes are what mosquitto_passwd writes, both ways."""
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "someone", "s3cret"], check=True)
    theirs = passwd.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$101$")
    assert password_matches("s3cret", theirs) and not password_matches("S3cret", theirs)
    ours = mosquitto_hash("s3cret")
    assert password_matches("s3cret", ours) and ours != mosquitto_hash("s3cret")  # salted
    assert not password_matches("s3cret", "plain") and not password_matches("s3cret", "$6$1$aa$bb")
