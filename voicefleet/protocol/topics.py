"""MQTT topics: ``vf/v1/dev/<device>/<kind>``, one subtree per device (docs/protocol.md, Topics)."""

from __future__ import annotations

import re

from voicefleet.protocol.base import ProtocolError

TOPIC_ROOT = "vf/v1"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)

# Device subtree topic kinds: (kind, direction, qos). See docs/protocol.md.
TO_DEVICE = ("job", "cancel", "ota", "reminder")
FROM_DEVICE = ("state", "telemetry", "event")


def device_topic(device_id: str, kind: str) -> str:
    if not _DEVICE_ID_RE.fullmatch(device_id):
        raise ProtocolError("bad_device_id", f"device id {device_id!r} must match {DEVICE_ID_PATTERN}")
    if kind not in TO_DEVICE + FROM_DEVICE:
        raise ProtocolError("bad_topic", f"unknown topic kind {kind!r}")
    return f"{TOPIC_ROOT}/dev/{device_id}/{kind}"


def control_subscriptions() -> list[str]:
    return [f"{TOPIC_ROOT}/dev/+/{kind}" for kind in FROM_DEVICE]


def parse_device_topic(topic: str) -> tuple[str, str]:
    """``vf/v1/dev/D/kind`` -> ``(D, kind)``; anything else is a ProtocolError."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{TOPIC_ROOT}/dev" or not _DEVICE_ID_RE.fullmatch(parts[3]):
        raise ProtocolError("bad_topic", f"topic {topic!r} is not {TOPIC_ROOT}/dev/<device>/<kind>")
    if parts[4] not in TO_DEVICE + FROM_DEVICE:
        raise ProtocolError("bad_topic", f"unknown topic kind {parts[4]!r}")
    return parts[3], parts[4]
