"""For the security tests: a secured Mosquitto of the test's own (no anonymous logins, password and
ACL files written by the control plane's code from a real database), MQTT 5 clients that record what
the broker says, and a throwaway CA."""

from __future__ import annotations

import datetime
import ipaddress
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine
from sqlmodel import Session

from control_plane import enrolment
from control_plane.broker_auth import BrokerFiles
from control_plane.core.db import make_engine, upgrade
from voicefleet.broker import BrokerTls, MosquittoBroker
from voicefleet.settings import mqtt_host_port, mqtt_tls

CONTROL_USER, CONTROL_PASSWORD = "control-test", "control-secret"


@dataclass
class Secured:
    broker: MosquittoBroker
    engine: Engine
    files: BrokerFiles

    def enrol(self, device_id: str) -> str:
        """A new device's password, enrolled with a fresh one-time token; the broker reloaded."""
        with Session(self.engine) as session:
            _, token = enrolment.create_token(session, device_id=device_id, tags=[], ttl_s=60)
            _, password = enrolment.enrol(session, token=token, device_id=device_id)
        self.files.sync(self.engine)
        return password

    def revoke(self, device_id: str) -> None:
        with Session(self.engine) as session:
            assert enrolment.revoke(session, device_id=device_id) is not None
        self.files.sync(self.engine)


def secured_broker(tmp_path: Path, tls: BrokerTls | None = None) -> Iterator[Secured]:
    engine = make_engine(f"sqlite:///{tmp_path}/cp.db")
    upgrade(str(engine.url))
    broker = MosquittoBroker(tmp_path / "broker", secured=True, tls=tls)
    files = BrokerFiles(broker.workdir, broker.pid_path)
    with Session(engine) as session:
        enrolment.ensure_control_user(session, username=CONTROL_USER, password=CONTROL_PASSWORD)
    with broker:
        files.sync(engine)
        yield Secured(broker, engine, files)
    engine.dispose()


@dataclass
class Client:
    """An MQTT 5 client whose connects, acks and messages land in ``events`` (in arrival order)."""

    paho: paho.Client
    events: queue.Queue = field(default_factory=queue.Queue)
    connected: threading.Event = field(default_factory=threading.Event)

    def wait(self, kind: str, timeout_s: float = 5.0):
        """The next event of ``kind`` (connect, disconnect, puback, suback, message), or None."""
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                got_kind, value = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
                if got_kind == kind:
                    return value
        except queue.Empty:
            return None

    def publish(self, topic: str, payload: bytes = b"{}") -> str:
        """Publish at QoS 1; the PUBACK's reason ("Success", "Not authorized", ...)."""
        self.paho.publish(topic, payload, qos=1)
        return self.wait("puback")

    def subscribe(self, topic: str) -> list[str]:
        self.paho.subscribe(topic, qos=1)
        return self.wait("suback")

    def stop(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def connect(url: str, username: str | None, password: str | None, *, client_id: str | None = None,
            ca_file: Path | None = None, wait: bool = True) -> Client:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or username or "", protocol=paho.MQTTv5)
    client = Client(c)
    put = client.events.put

    def on_connect(cl, ud, flags, rc, props):
        put(("connect", str(rc)))
        if not rc.is_failure:
            client.connected.set()

    def on_disconnect(cl, ud, flags, rc, props):
        client.connected.clear()
        put(("disconnect", str(rc)))

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    c.on_publish = lambda cl, ud, mid, rc, props: put(("puback", str(rc)))
    c.on_subscribe = lambda cl, ud, mid, rcs, props: put(("suback", [str(r) for r in rcs]))
    c.on_message = lambda cl, ud, msg: put(("message", (msg.topic, msg.payload)))
    if username is not None:
        c.username_pw_set(username, password)
    if mqtt_tls(url):
        c.tls_set(ca_certs=str(ca_file) if ca_file else None)
    c.reconnect_delay_set(1, 1)
    host, port = mqtt_host_port(url)
    c.connect_async(host, port, keepalive=10)
    c.loop_start()
    if wait:
        assert client.wait("connect") is not None, f"no CONNACK from {url}"
    return client


# ------------------------------------------------------------------------- test certificates


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(folder: Path) -> Pki:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost that it signed (never committed)."""
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    end = start + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voicefleet test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return pki
