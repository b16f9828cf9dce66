"""What the ``voicefleet`` command reads from the environment, read once per process."""

from __future__ import annotations

from voicefleet.settings import CommonSettings

DEFAULT_API = "http://127.0.0.1:8750"


class CliSettings(CommonSettings):
    """CommonSettings plus the API address of the client commands and the one-box HTTP listener."""

    api_url: str | None = None  # VOICEFLEET_API_URL; --api wins, DEFAULT_API otherwise
    http_host: str = "127.0.0.1"  # where `voicefleet up` serves the API (as the control plane reads them)
    http_port: int = 8750

    def names_broker(self) -> bool:
        """Whether VOICEFLEET_MQTT_URL names a broker (then `up` starts none of its own)."""
        return "mqtt_url" in self.model_fields_set
