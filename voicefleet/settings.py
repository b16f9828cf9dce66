"""Settings shared by every voicefleet process; each process builds its settings object once.

All configuration comes from environment variables with the ``VOICEFLEET_`` prefix; the
defaults run everything on one box with no setup.
"""

from __future__ import annotations

from pathlib import Path
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
    log_level: str = "INFO"


def mqtt_host_port(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` -> (host, port); the port defaults to 1883."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"VOICEFLEET_MQTT_URL {url!r}: scheme must be mqtt://")
    return parts.hostname or "127.0.0.1", parts.port or 1883
