"""Several engines behind one agent: each job goes to the first that can speak it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from edge_agent.engines.base import Engine, EngineError, SynthesisRequest, never_cancelled
from voicefleet.protocol import Capabilities


class EngineChain(Engine):
    def __init__(self, engines: list[Engine]):
        self.engines = engines
        self.descriptor = engines[0].descriptor  # the primary engine names the agent
        caps = [e.capabilities for e in engines]
        self.capabilities = Capabilities(
            languages=_union(c.languages for c in caps), dialects=_union(c.dialects for c in caps),
            voices=_union(c.voices for c in caps), streaming=all(c.streaming for c in caps),
            cloning=any(c.cloning for c in caps), instructions=any(c.instructions for c in caps),
            voice_required=all(c.voice_required for c in caps))

    def select(self, request: SynthesisRequest, engine: str | None = None) -> Engine:
        """The engine named ``engine`` (placement's choice) when it is here and can, else the first
        whose capabilities cover ``request``."""
        able = [e for e in self.engines if e.capabilities.missing_for(request) is None]
        for member in able:
            if member.descriptor.name == engine:
                return member
        if able:
            return able[0]
        raise EngineError("unsupported", f"no engine here speaks lang {request.lang!r} dialect "
                                         f"{request.dialect!r} voice {request.voice!r}")

    def members(self) -> list[Engine]:
        return list(self.engines)

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        return self.select(request).synthesize(request, cancelled)


def _union(lists) -> list[str]:
    return list(dict.fromkeys(item for items in lists for item in items))
