"""Hardware profiles: the data files in ``profiles/`` that say what an image is built for."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from voicefleet.errors import CodedError

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
LOCKS_DIR = Path(__file__).resolve().parent / "locks"
# Settings the agent reads outside AgentSettings (voicefleet/bundle.py's trusted keys).
DIRECT_AGENT_ENV = ("trusted_keys",)


class ImageError(CodedError):
    """An image that cannot be built or verified; ``code`` is for machines, ``text`` says what to fix."""


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str
    arch: Literal["aarch64", "x86_64"]
    python: str = Field(pattern=r"^3\.\d+$")
    glibc: str = Field(pattern=r"^2\.\d+$")  # the device's C library: the newest manylinux wheels it runs
    compatible: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    slot_class: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    rootfs_slot_class: str = Field(default="rootfs", pattern=r"^[a-z][a-z0-9_-]{0,31}$")  # for --rootfs
    mount_point: str = Field(pattern=r"^/[A-Za-z0-9_./-]+$")
    lock: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.txt$")
    agent: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("agent")
    @classmethod
    def _known_settings(cls, agent: dict[str, Any]) -> dict[str, Any]:
        from edge_agent.config import AgentSettings

        known = set(AgentSettings.model_fields) | set(DIRECT_AGENT_ENV)
        if unknown := sorted(set(agent) - known):
            raise ValueError(f"[agent] keys {unknown} are not agent settings (known: {sorted(known)})")
        return agent

    @property
    def lock_path(self) -> Path:
        return LOCKS_DIR / self.lock

    def agent_env(self, extra: dict[str, str]) -> str:
        """The default configuration as ``VOICEFLEET_*`` lines (systemd EnvironmentFile syntax)."""
        values = {**{k: _env_value(v) for k, v in self.agent.items()}, **extra}
        return "".join(f"VOICEFLEET_{k.upper()}={v}\n" for k, v in sorted(values.items()))


def _env_value(value: str | int | float | bool) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if not re.fullmatch(r"[A-Za-z0-9_.,:/@+=-]*", text):
        raise ImageError("bad_profile", f"agent setting value {text!r} needs quoting; keep it to plain characters")
    return text


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by name (``profiles/NAME.toml``) or by the path of a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ImageError("unknown_profile", f"no profile {name_or_path!r}; known: {', '.join(profile_names())}")
    try:
        profile = Profile(**tomllib.loads(path.read_text()))
    except (tomllib.TOMLDecodeError, ValidationError) as e:
        raise ImageError("bad_profile", f"{path}: {e}") from None
    if path.parent == PROFILES_DIR and profile.name != path.stem:
        raise ImageError("bad_profile", f"{path}: name {profile.name!r} must match the file name")
    return profile
