"""Where the hub speaks a request (pure): the cloud only for what the local engines cannot do, and only
with the link up; otherwise locally, with what the local engines lack dropped."""

from __future__ import annotations

from typing import Literal

from edge_agent.engines.base import SynthesisRequest
from voicefleet.protocol import Capabilities


def cloud_wanted(request: SynthesisRequest, local_caps: Capabilities) -> str | None:
    """What the local engines lack for this request (a phrase), or None when they cover it."""
    if request.prompt is not None and not local_caps.cloning:
        return f"prompt voice {request.prompt.voice_id!r}"
    return local_caps.missing_for(request)


def decide(request: SynthesisRequest, local_caps: Capabilities,
           link_up: bool) -> tuple[Literal["local", "cloud"], str]:
    """Where to speak ``request``: the cloud only for what the local model cannot do, and only with
    the link up; otherwise locally, the reason then saying what is given up."""
    missing = cloud_wanted(request, local_caps)
    if missing is None:
        return "local", "the local engine covers the request"
    if link_up:
        return "cloud", f"the local engine lacks {missing}"
    return "local", f"cloud link down; the local engine lacks {missing}"


def local_fallback(request: SynthesisRequest, local_caps: Capabilities) -> SynthesisRequest:
    """The nearest request the local engines can speak: drop the dialect, voice or instruction they
    lack (the default voice, Mandarin rather than the dialect). A language they lack stays: unsayable."""
    caps = local_caps
    dialect = request.dialect if request.dialect in caps.dialects else None
    voice = request.voice if request.voice in caps.voices or caps.cloning else None
    instruction = request.instruction if caps.instructions else None
    return request.model_copy(update={"dialect": dialect, "voice": voice, "instruction": instruction, "prompt": None})
