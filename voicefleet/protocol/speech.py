"""One speech request, defined once: what to say and how (``SpeechSpec``), and what an engine offers.

Every shape of a request carries the spec's fields by inheriting them, never by copying:
the API body (control_plane JobCreate), the job row (Job), the wire assignment (JobAssign,
flat on the wire), the engine's request (edge_agent SynthesisRequest); the scheduler matches a
spec against ``Capabilities.missing_for``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from voicefleet.protocol.base import ID_PATTERN

MAX_TEXT_CHARS = 5000  # texts of this length or longer are refused at submit


def text_too_long(text: str) -> str | None:
    """Why ``text`` is too long for one job, in the words every path answers (the control plane's
    submit, the hub's local API), or None."""
    if len(text) >= MAX_TEXT_CHARS:
        return f"text has {len(text)} characters; split it into jobs under {MAX_TEXT_CHARS}"
    return None

# The languages a job may ask for (those CosyVoice3 speaks).
LANGUAGES: dict[str, str] = {
    "zh": "Chinese (Mandarin unless a dialect is given)",
    "en": "English",
    "ja": "Japanese",
    "ko": "Korean",
    "de": "German",
    "es": "Spanish",
    "fr": "French",
    "it": "Italian",
    "ru": "Russian",
}


class SpeechSpec(BaseModel):
    """What to say and how. Each shape adds its own checks: the API validates the text, the
    language and the dialect; the wire bounds the text. Matching against an engine reads all but
    the text (an engine probe may leave it empty)."""

    text: str
    lang: str = "zh"  # a LANGUAGES code
    dialect: str | None = None  # a DIALECTS code (the API also takes names and "auto")
    voice: str | None = None  # a preset an engine advertises, or a stored (cloned) voice's id
    instruction: str | None = None  # style, in words ("用开心的语气说"); may also ask for a dialect

    def spec_fields(self) -> dict[str, Any]:
        """The spec's fields by name, to fill another shape of it: ``JobAssign(**job.spec_fields(), ...)``."""
        return {name: getattr(self, name) for name in _SPEC_FIELDS}

    def spec(self) -> SpeechSpec:
        """Just the spec, from any shape that carries it (a job row, an API body, an assignment)."""
        return SpeechSpec(**self.spec_fields())


_SPEC_FIELDS: tuple[str, ...] = tuple(SpeechSpec.model_fields)


class Capabilities(BaseModel):
    """What an agent's engine can do; the scheduler matches jobs against it."""

    model_config = ConfigDict(frozen=True)
    languages: list[str] = Field(default_factory=list)
    dialects: list[str] = Field(default_factory=list)
    voices: list[str] = Field(default_factory=list)
    streaming: bool = True
    cloning: bool = False
    instructions: bool = False
    voice_required: bool = False  # no default voice: only jobs that name one (CosyVoice3 without a default prompt)

    def missing_for(self, spec: SpeechSpec) -> str | None:
        """The first capability this spec needs that is absent here, as a phrase, or None."""
        if spec.lang not in self.languages:
            return f"language {spec.lang!r}"
        if spec.dialect and spec.dialect not in self.dialects:
            return f"dialect {spec.dialect!r}"
        if self.voice_required and not spec.voice:
            return "a default voice (this engine speaks only the voices a job names)"
        if spec.voice and spec.voice not in self.voices and not self.cloning:
            return f"voice {spec.voice!r} (not a preset here; a cloned voice needs an engine that clones)"
        if spec.instruction and not self.instructions:
            return "style instructions"
        return None


class EngineDescriptor(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    version: str
    model: str
    sample_rate: int


# Quality tiers, worst to best: what a listener hears, judged by how the voice is made and what was
# measured of it (docs/quality.md). Placement prefers the best tier that can serve a job in time.
QUALITY_TIERS: tuple[str, ...] = ("formant", "neural", "flagship")
Tier = Literal["formant", "neural", "flagship"]
_RANKS = {tier: rank for rank, tier in enumerate(QUALITY_TIERS)}


def tier_rank(tier: str) -> int:
    """Higher is better; an unknown tier ranks below every known one."""
    return _RANKS.get(tier, -1)


def split_voice(voice: str | None) -> tuple[str | None, str | None]:
    """``"espeak-ng:female"`` -> (engine, preset); a bare preset or a cloned voice's id has no engine."""
    if voice and ":" in voice:
        engine, _, preset = voice.partition(":")
        return engine, preset or None
    return None, voice


class VoiceFigures(BaseModel):
    """What was measured of an engine's voice (a bundle's evaluation), where it was: the character
    error rate through the offline recogniser, the distance to its teacher, speaker similarity to
    the teacher, and the real-time factor on one thread (the scheduler's prior)."""

    model_config = ConfigDict(frozen=True)
    cer: float | None = None
    mcd_db: float | None = None
    speaker_similarity: float | None = None
    rtf: float | None = None


class EngineOffer(BaseModel):
    """One engine of a device as placement ranks it: what it is, what it speaks, its quality tier
    and its measured figures. A device with a chain of engines offers each."""

    model_config = ConfigDict(frozen=True)
    engine: EngineDescriptor
    capabilities: Capabilities
    tier: Tier
    figures: VoiceFigures = Field(default_factory=VoiceFigures)

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def rank(self) -> int:
        return tier_rank(self.tier)

    def voices(self) -> list[str]:
        """Its presets by full name (``engine:preset``), as a caller may ask for one of this engine only."""
        return [f"{self.name}:{v}" for v in self.capabilities.voices]

    def missing_for(self, spec: SpeechSpec) -> str | None:
        """What ``spec`` needs that this engine lacks, or None; a voice named ``engine:preset``
        is served only by that engine."""
        engine, preset = split_voice(spec.voice)
        if engine is not None and engine != self.name:
            return f"voice {spec.voice!r} (it belongs to engine {engine!r})"
        return self.capabilities.missing_for(spec.model_copy(update={"voice": preset}) if engine else spec)


class VoicePrompt(BaseModel):
    """A cloned voice's prompt, for engines that clone (CosyVoice3): the clip and its words."""

    model_config = ConfigDict(frozen=True)
    voice_id: str = Field(pattern=ID_PATTERN)
    transcript: str
    audio_url: str  # the control plane's GET /v1/voices/{id}/audio (24 kHz mono WAV)
    sha256: str  # of that WAV file, so a device can cache prompts and check what it fetched
    language: str | None = None  # what the clip speaks, where known (the uploader's word, or its script's)
