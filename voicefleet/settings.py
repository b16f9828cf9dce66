"""Settings shared by every voicefleet process; each process builds its settings object once.

All configuration comes from environment variables with the ``VOICEFLEET_`` prefix; the
defaults run everything on one box with no setup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".voicefleet"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOICEFLEET_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="data folder for the one-box setup")
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_session_expiry_s: int = 3600
    mqtt_keepalive_s: int = 10
    # A broker that wants a login (docs/security.md). An enrolled agent takes its own from its data dir.
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    # The CA that signed the broker's (mqtts://) and the control plane's (https://) certificates when
    # they come from a private CA; the system's CAs otherwise.
    ca_file: Path | None = None
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object a line for a collector (voicefleet/logs.py)

    def mqtt_login(self) -> MqttLogin:
        return MqttLogin(self.mqtt_username, self.mqtt_password, self.ca_file)


@dataclass(frozen=True)
class MqttLogin:
    """How to log in to the broker: username/password (None: anonymous) and the CA for TLS."""

    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None


def mqtt_host_port(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` -> (host, port); the port defaults to 1883 (8883 for ``mqtts://``)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
        raise ValueError(f"VOICEFLEET_MQTT_URL {url!r}: scheme must be mqtt:// or mqtts:// (TLS)")
    return parts.hostname or "127.0.0.1", parts.port or (8883 if mqtt_tls(url) else 1883)


def mqtt_tls(url: str) -> bool:
    """Whether ``url`` names a TLS listener (``mqtts://``)."""
    return url.split("://", 1)[0] in ("mqtts", "ssl")
