"""The one engine interface: text and options in, 16-bit PCM chunks out (streaming)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from pydantic import ConfigDict

from voicefleet.errors import CodedError
from voicefleet.protocol import Capabilities, EngineDescriptor, EngineOffer, SpeechSpec, VoiceFigures, VoicePrompt
from voicefleet.text.speakable import unspeakable


class EngineError(CodedError):
    """Synthesis failed; ``code`` names the cause for machines, ``text`` says what to fix;
    ``retryable``: another attempt (on another device) may succeed."""

    def __init__(self, code: str, text: str, *, retryable: bool = False):
        super().__init__(code, text)
        self.retryable = retryable


class EngineUnavailable(EngineError):
    """The engine cannot start here (missing library, weights or hardware)."""

    def __init__(self, text: str):
        super().__init__("engine_unavailable", text)


class SynthesisRequest(SpeechSpec):
    """What an engine is asked to speak: the job's spec, and a cloned voice's prompt when it has one.

    ``SynthesisRequest("你好", dialect="yue")``: the text may come first, unnamed.
    """

    model_config = ConfigDict(frozen=True)
    prompt: VoicePrompt | None = None

    def __init__(self, text: str | None = None, /, **fields: Any) -> None:
        super().__init__(**fields if text is None else {**fields, "text": text})


def refuse_unspeakable(request: SpeechSpec) -> None:
    """EngineError (``empty_text`` or ``nothing_to_speak``) when nothing in the text would be spoken:
    every engine refuses such text the same way (voicefleet/text/speakable.py decides)."""
    why = unspeakable(request.text)
    if why is not None:
        raise EngineError(why.code, why.text)


def never_cancelled() -> bool:
    return False


class Engine(Protocol):
    """Implementations yield little-endian int16 mono PCM at ``descriptor.sample_rate``.

    ``synthesize`` is a generator: the first chunk must come out as soon as it exists (the
    first sentence), not after the whole text. It checks ``cancelled`` between chunks and
    stops early when it returns True. It raises EngineError for input it cannot speak.

    Engines subclass this to inherit ``select``; an ``EngineChain`` overrides it.
    """

    descriptor: EngineDescriptor
    capabilities: Capabilities
    tier: str = "neural"  # its quality tier (voicefleet.protocol QUALITY_TIERS); each engine says its own
    figures: VoiceFigures = VoiceFigures()  # what was measured of its voice, where a bundle says

    def select(self, request: SynthesisRequest, engine: str | None = None) -> Engine:
        """The engine that will speak ``request`` (its descriptor's sample rate applies): a single
        engine is itself; a chain picks its member named ``engine`` (placement's choice) or its
        first that can, or raises EngineError."""
        return self

    def members(self) -> list[Engine]:
        """The engines that speak for this one: itself, or a chain's members."""
        return [self]

    def offers(self) -> list[EngineOffer]:
        """What the device advertises of each engine: placement ranks these."""
        return [EngineOffer(engine=e.descriptor, capabilities=e.capabilities, tier=e.tier, figures=e.figures)
                for e in self.members()]

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]: ...
