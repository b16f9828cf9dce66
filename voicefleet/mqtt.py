"""A thin paho-mqtt 2.x wrapper shared by the control plane and agents.

MQTT 5, QoS 1, persistent sessions (``clean_start=False`` plus a session expiry: without the
property the broker drops the session on disconnect). Subscriptions are made in ``on_connect``
so they survive reconnects. Callbacks do no work: messages go to the caller's queue.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from voicefleet.errors import CodedError
from voicefleet.settings import MqttLogin, mqtt_host_port, mqtt_tls

log = logging.getLogger(__name__)
# CONNACK reasons that no retry will change: the broker answered and refused this login (MQTT 5, 3.2.2.2).
LOGIN_REFUSALS = frozenset({"Not authorized", "Bad user name or password", "Client identifier not valid",
                            "Banned"})
# How long after reconnecting what arrives may still be the broker's own upheaval rather than news
# from devices: the persistent session's backlog, last wills of clients it restored, clients coming
# back through their reconnect backoff (at most 5 s, reconnect_delay_set below), twice over. A
# first connection follows no upheaval of ours: what it brings is news.
SETTLE_S = 10.0


class MqttUnavailable(CodedError):
    """The broker could not be reached in time, or refused us; the text says what to do."""

    def __init__(self, text: str, code: str = "mqtt_unavailable"):
        super().__init__(code, text)


class MqttRefused(MqttUnavailable):
    """The broker answered and refused our login (``reason``: its CONNACK reason, e.g. Not authorized)."""

    def __init__(self, reason: str, text: str):
        super().__init__(text, "mqtt_login_refused")
        self.reason = reason


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retained: bool = False  # delivered from the broker's retained store: old news, not a heartbeat
    settling: bool = False  # arrived within SETTLE_S of this client's reconnection (see SETTLE_S)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class MqttClient:
    """One MQTT 5 connection. With ``manual_ack`` the owner acks each message after it has made
    it durable (the broker redelivers anything unacked after a crash)."""

    def __init__(self, url: str, client_id: str, *, inbox: queue.Queue[Inbound],
                 subscriptions: list[tuple[str, int]], session_expiry_s: int = 3600,
                 keepalive_s: int = 10, will: Will | None = None, manual_ack: bool = False,
                 receive_maximum: int = 1000, on_connected=None, login: MqttLogin | None = None,
                 login_help: str | None = None):
        """``login_help``: what to do when the broker refuses the login (where it came from, how to get
        a new one); said with the refusal."""
        self.host, self.port = mqtt_host_port(url)
        self.client_id = client_id
        self._inbox = inbox
        self._subscriptions = subscriptions
        self._session_expiry_s = session_expiry_s
        self._keepalive_s = keepalive_s
        self._receive_maximum = receive_maximum
        self._on_connected = on_connected
        self.connected = threading.Event()
        self._linked_at: float | None = None  # monotonic time of the current connection
        self._links = 0  # connections made so far: from the second on, each follows an upheaval
        self.refused: str | None = None  # the broker's last CONNACK refusal of our login, if any
        self._login = login or MqttLogin()
        self._login_help = login_help
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=paho.MQTTv5, manual_ack=manual_ack,
        )
        self._client.max_inflight_messages_set(receive_maximum)
        self._client.max_queued_messages_set(0)  # unbounded: a publish is never dropped locally
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        _apply_login(self._client, self._login, tls=mqtt_tls(url))
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        # paho writes each packet separately; with Nagle on, a packet sent right after another
        # waits ~40 ms for the peer's delayed ACK (measured: 78 ms -> 9.6 ms submit-to-first-chunk).
        self._client.on_socket_open = _no_delay
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0, *, require: bool = True) -> None:
        """Connect (and keep reconnecting). ``require``: raise MqttUnavailable if no broker answers
        within ``timeout_s``, MqttRefused at once if it refuses our login; a hub that must work offline
        passes False and carries on without one."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive_s,
                                   clean_start=False, properties=props)
        self._client.loop_start()
        if not require:
            return
        deadline = time.monotonic() + timeout_s
        while not self.connected.wait(0.05):
            if self.refused in LOGIN_REFUSALS or time.monotonic() > deadline:
                self._client.loop_stop()
                if self.refused:  # the broker answered: its reason, not "no broker"
                    raise MqttRefused(self.refused, self.refusal_text(self.refused))
                raise MqttUnavailable(f"no MQTT broker answered at {self.host}:{self.port} within {timeout_s}s; "
                                      "start one or set VOICEFLEET_MQTT_URL")

    def refusal_text(self, reason: str) -> str:
        who = f"as {self._login.username!r}" if self._login.username else "without a username"
        text = f"the broker refused our login ({reason}) {who} at {self.host}:{self.port}"
        return f"{text}: {self._login_help}" if self._login_help else text

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # -- traffic -----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False):
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def ack(self, mid: int, qos: int) -> None:
        self._client.ack(mid, qos)

    # -- callbacks (no work here: hand over and return) -------------------------------------

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            first = self.refused != str(reason_code)  # paho keeps retrying: say each new reason once
            self.refused = str(reason_code)
            if first:
                log.error("MQTT connect refused: %s", self.refusal_text(self.refused))
            return
        self.refused = None
        self._linked_at = time.monotonic()
        self._links += 1
        if self._subscriptions:
            client.subscribe(self._subscriptions)
        log.info("MQTT connected to %s:%s as %s (session present: %s)", self.host, self.port,
                 self.client_id, flags.session_present)
        if self._on_connected is not None:
            self._on_connected()
        self.connected.set()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self._linked_at = None
        log.warning("MQTT disconnected from %s:%s: %s", self.host, self.port, reason_code)

    def _handle_message(self, client, userdata, msg) -> None:
        self._inbox.put(Inbound(msg.topic, msg.payload, msg.mid, msg.qos, bool(msg.retain),
                                settling=self._links > 1 and self.link_age() < SETTLE_S))

    def link_age(self) -> float:
        """Seconds this connection to the broker has been up; 0 while there is none."""
        at = self._linked_at
        return 0.0 if at is None else time.monotonic() - at


def _apply_login(client: paho.Client, login: MqttLogin, *, tls: bool) -> None:
    if login.username is not None:
        client.username_pw_set(login.username, login.password)
    if tls:  # verifies the broker's certificate and host name
        client.tls_set(ca_certs=str(login.ca_file) if login.ca_file else None)


def _no_delay(client, userdata, sock) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
