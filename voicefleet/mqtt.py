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
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from voicefleet.settings import MqttLogin, mqtt_host_port, mqtt_tls

log = logging.getLogger(__name__)


class MqttUnavailable(RuntimeError):
    """The broker could not be reached in time."""


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retained: bool = False  # delivered from the broker's retained store: old news, not a heartbeat


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
                 receive_maximum: int = 1000, on_connected=None, login: MqttLogin | None = None):
        self.host, self.port = mqtt_host_port(url)
        self.client_id = client_id
        self._inbox = inbox
        self._subscriptions = subscriptions
        self._session_expiry_s = session_expiry_s
        self._keepalive_s = keepalive_s
        self._receive_maximum = receive_maximum
        self._on_connected = on_connected
        self.connected = threading.Event()
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=paho.MQTTv5, manual_ack=manual_ack,
        )
        self._client.max_inflight_messages_set(receive_maximum)
        self._client.max_queued_messages_set(0)  # unbounded: a publish is never dropped locally
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        _apply_login(self._client, login or MqttLogin(), tls=mqtt_tls(url))
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
        within ``timeout_s``; a hub that must work offline passes False and carries on without one."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive_s,
                                   clean_start=False, properties=props)
        self._client.loop_start()
        if require and not self.connected.wait(timeout_s):
            self._client.loop_stop()
            raise MqttUnavailable(f"no MQTT broker answered at {self.host}:{self.port} within {timeout_s}s; "
                                  "start one or set VOICEFLEET_MQTT_URL")

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
            log.error("MQTT connect to %s:%s refused: %s", self.host, self.port, reason_code)
            return
        if self._subscriptions:
            client.subscribe(self._subscriptions)
        log.info("MQTT connected to %s:%s as %s (session present: %s)", self.host, self.port,
                 self.client_id, flags.session_present)
        if self._on_connected is not None:
            self._on_connected()
        self.connected.set()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.warning("MQTT disconnected from %s:%s: %s", self.host, self.port, reason_code)

    def _handle_message(self, client, userdata, msg) -> None:
        self._inbox.put(Inbound(msg.topic, msg.payload, msg.mid, msg.qos, bool(msg.retain)))


def _apply_login(client: paho.Client, login: MqttLogin, *, tls: bool) -> None:
    if login.username is not None:
        client.username_pw_set(login.username, login.password)
    if tls:  # verifies the broker's certificate and host name
        client.tls_set(ca_certs=str(login.ca_file) if login.ca_file else None)


def _no_delay(client, userdata, sock) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
