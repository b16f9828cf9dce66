"""What one device says on the broker, in arrival order (its states and events), for tests that talk to
an agent directly, without a control plane; ``send`` publishes on the device's topics."""

from __future__ import annotations

import queue
import threading
import uuid

from services import wait_for

from voicefleet import protocol as p
from voicefleet.mqtt import Inbound, MqttClient


class DeviceWatch:
    def __init__(self, url: str, device_id: str):
        self.device_id = device_id
        self.seen: list[p.Message] = []  # states and events together, in arrival order
        self.states: list[p.DeviceState] = []
        self.events: list[p.Message] = []
        self._inbox: queue.Queue[Inbound] = queue.Queue()
        self.mqtt = MqttClient(url, f"watch-{uuid.uuid4().hex[:8]}", inbox=self._inbox, session_expiry_s=0,
                               subscriptions=[(p.device_topic(device_id, "state"), 1),
                                              (p.device_topic(device_id, "event"), 1)])
        threading.Thread(target=self._drain, daemon=True).start()
        self.mqtt.start()

    def _drain(self) -> None:
        while True:
            msg = self._inbox.get()
            _, kind = p.parse_device_topic(msg.topic)
            decoded, _ = p.decode(kind, msg.payload)
            (self.states if kind == "state" else self.events).append(decoded)
            self.seen.append(decoded)

    def send(self, kind: str, message: p.Message) -> None:
        self.mqtt.publish(p.device_topic(self.device_id, kind), p.encode(message)).wait_for_publish(5)

    def find(self, what: str, match, timeout_s: float = 60):
        return wait_for(lambda: next((m for m in list(self.seen) if match(m)), None), what, timeout_s)

    def stop(self) -> None:
        self.mqtt.stop()
