"""The agent's side of enrolment (docs/security.md): trade the one-time VOICEFLEET_ENROL_TOKEN for
this device's own MQTT login at the control plane (VOICEFLEET_API_URL), keep it in the data dir
(mode 0600), and log in with it from then on. Standard library only (edge install)."""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.request
from dataclasses import replace

from edge_agent.config import AgentSettings
from voicefleet.api_errors import error_text
from voicefleet.errors import CodedError
from voicefleet.files import write_atomic
from voicefleet.settings import MqttLogin

log = logging.getLogger(__name__)
TIMEOUT_S = 30.0


class EnrolmentFailed(CodedError):
    """The control plane refused the token or could not be reached; the text says what to do."""

    def __init__(self, text: str):
        super().__init__("enrolment_failed", text)


def mqtt_login(settings: AgentSettings) -> MqttLogin:
    """The login to use: the stored one, else one got now with the enrolment token, else the settings'."""
    path = settings.credentials_path()
    if not path.exists() and settings.enrol_token:
        _store(settings, enrol(settings))
    if not path.exists():
        return settings.mqtt_login()
    stored = json.loads(path.read_text())
    return replace(settings.mqtt_login(), username=stored["mqtt_username"], password=stored["mqtt_password"])


def login_help(settings: AgentSettings) -> str:
    """What to do when the broker refuses the login that mqtt_login() chose: where it came from and how
    to get one that works (said with the refusal, instead of a traceback)."""
    path, device = settings.credentials_path(), settings.device_id
    new_token = (f"ask an admin for an enrolment token naming {device!r} (POST /v1/enrolment-tokens "
                 f"{{\"device_id\": \"{device}\"}}) and start with VOICEFLEET_ENROL_TOKEN=<token>")
    if path.exists():
        return (f"the login stored in {path} was revoked or is unknown to this broker's control plane; "
                f"delete that file, {new_token} and VOICEFLEET_API_URL (docs/security.md)")
    if settings.mqtt_login().username:
        return f"check VOICEFLEET_MQTT_USERNAME and VOICEFLEET_MQTT_PASSWORD, or enrol: {new_token}"
    return f"this broker wants a login: {new_token} and VOICEFLEET_API_URL (docs/security.md)"


def enrol(settings: AgentSettings) -> dict:
    """POST /v1/enrol: this device's credentials (``mqtt_username``, ``mqtt_password``, ``tags``)."""
    if not settings.api_url:
        raise EnrolmentFailed("VOICEFLEET_ENROL_TOKEN is set but not VOICEFLEET_API_URL: where to enrol?")
    body = json.dumps({"token": settings.enrol_token, "device_id": settings.device_id}).encode()
    req = urllib.request.Request(f"{settings.api_url.rstrip('/')}/v1/enrol", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S, context=context) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise EnrolmentFailed(f"enrolment refused ({exc.code}): {error_text(exc.read())}") from None
    except urllib.error.URLError as exc:
        raise EnrolmentFailed(f"cannot reach the control plane at {settings.api_url} to enrol: {exc.reason}") from None
    log.info("enrolled as %s (tags %s)", answer["device_id"], answer.get("tags"))
    return answer


def _store(settings: AgentSettings, answer: dict) -> None:
    path = settings.credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(answer), mode=0o600)  # never readable by others, not even briefly

