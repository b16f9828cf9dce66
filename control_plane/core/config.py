"""The control plane's settings (environment variables with the VOICEFLEET_ prefix)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from voicefleet.errors import CodedError
from voicefleet.settings import CommonSettings, MqttLogin, mqtt_host_port


class SettingsError(CodedError):
    """A setting to fix before the control plane can start."""


class Settings(CommonSettings):
    database_url: str | None = None  # default: SQLite (WAL) in VOICEFLEET_HOME
    audio_dir: Path | None = None  # default: VOICEFLEET_HOME/audio
    redis_url: str | None = None  # speaker embeddings and rate limits shared by replicas; in-process without it
    http_host: str = "127.0.0.1"
    http_port: int = 8750
    public_url: str | None = None  # how agents reach this API (cloned voices' prompt audio); default host:port
    # The first admin token (vft_<16 hex>_<secret>); without it one is made in VOICEFLEET_HOME/admin.token.
    admin_token: str | None = None
    url_secret: str | None = None  # signs agents' download URLs; replicas must share it (default: kept in home)
    control_id: str = "control"  # this replica's name (logs, leadership); unique per control-plane replica
    # The MQTT client id of the dispatcher, which only the leader runs: the same for every replica of a
    # cluster, so a new leader takes over the broker's session and the messages queued in it. Default:
    # control_id (one control plane).
    mqtt_client_id: str | None = None
    replica_url: str | None = None  # where the other replicas reach this one's API; default: http://HOST:PORT
    # Mosquitto's passwd and acl files that this control plane maintains (docs/security.md); None: the
    # broker's logins are managed elsewhere. The broker's pid (to SIGHUP) is read from broker_pid_file.
    broker_dir: Path | None = None
    broker_pid_file: Path | None = None  # default: broker_dir/mosquitto.pid
    tls_cert_file: Path | None = None  # HTTPS: the certificate chain (PEM) ...
    tls_key_file: Path | None = None  # ... and its private key
    max_attempts: int = 3  # a job fails after this many attempts, with every attempt's reason
    lease_s: float = 120.0  # an assignment not finished by then is taken back
    heartbeat_timeout_s: float = 30.0  # no state/telemetry for this long: device offline
    # Submit still accepts (and queues) jobs that only devices away for less than this can serve, so
    # a broker restart or a short network cut does not turn into refusals; 0 refuses at once.
    offline_grace_s: float = 60.0
    max_queued_jobs: int = 100_000  # submit answers 429 past this (all tiers together)
    max_queued_interactive: int = 20_000  # and past these per tier
    max_queued_batch: int = 100_000
    scheduler_policy: Literal["latency", "least_conn", "round_robin"] = "latency"
    prefer_edge: bool = False  # among devices that meet a job's deadline, take an edge one first
    batch_starve_s: float = 30.0  # a batch job queued this long is served among interactive ones
    # A job running this many times longer than expected (and at least hedge_min_s) is taken off its
    # device and given to one expected to finish it sooner; 0 turns this off.
    hedge_factor: float = 3.0
    hedge_min_s: float = 1.0
    session_ttl_s: float = 8 * 3600.0  # a console sign-in (POST /v1/session) lasts this long
    # The console's overview raises an alarm when this share of the jobs finished in its window failed
    # (and at least alarm_error_min_jobs finished): fleet-wide, and per engine.
    alarm_error_rate: float = 0.10
    alarm_error_min_jobs: int = 20

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'voicefleet.db'}"

    def resolved_audio_dir(self) -> Path:
        return self.audio_dir or self.home / "audio"

    def mqtt_login(self) -> MqttLogin:
        """With a password, the control plane logs in as VOICEFLEET_MQTT_USERNAME, by default its control id."""
        login = super().mqtt_login()
        return replace(login, username=login.username or (self.control_id if login.password else None))

    def require_public_url(self) -> None:
        """Agents fetch a cloned voice's clip from ``api_url()``. Without VOICEFLEET_PUBLIC_URL that is
        this machine's own address, which agents elsewhere cannot reach: refuse to start whenever the
        settings say agents may be elsewhere (the API listens past loopback, or the broker is remote)."""
        if self.public_url:
            if urlsplit(self.public_url).scheme not in ("http", "https") or not urlsplit(self.public_url).hostname:
                raise SettingsError("invalid_public_url", f"VOICEFLEET_PUBLIC_URL={self.public_url!r} is not a URL: "
                                    "give the http(s) address agents reach this API at, e.g. https://voicefleet.example")
            return
        broker = mqtt_host_port(self.mqtt_url)[0]
        why = [text for remote, text in (
            (not _loopback(self.http_host), f"VOICEFLEET_HTTP_HOST={self.http_host} serves other machines"),
            (not _loopback(broker), f"the broker ({self.mqtt_url}) is on another machine")) if remote]
        if why:
            raise SettingsError("public_url_required", f"{' and '.join(why)}, so agents may be too, and they could "
                                f"not fetch cloned voices from {self.api_url()}: set VOICEFLEET_PUBLIC_URL to the "
                                "address agents reach this API at (behind a proxy or load balancer: its address)")

    def replica_api_url(self) -> str:
        """This replica's own address, for the others (never the load balancer's: VOICEFLEET_PUBLIC_URL)."""
        if self.replica_url:
            return self.replica_url.rstrip("/")
        host = socket.gethostname() if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"{'https' if self.tls_cert_file else 'http'}://{host}:{self.http_port}"

    def api_url(self) -> str:
        """Where agents fetch what a job refers to (a cloned voice's prompt clip)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"{'https' if self.tls_cert_file else 'http'}://{host}:{self.http_port}"


def _loopback(host: str) -> bool:
    """Only this machine can reach ``host`` (an empty host binds every interface)."""
    try:
        return bool(host) and (host == "localhost" or ipaddress.ip_address(host).is_loopback)
    except ValueError:  # a name other than localhost: another machine's, as far as we can tell
        return False
