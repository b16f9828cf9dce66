"""Benchmark- and test-only engines and the agent entry point that can run them; never for speech.

Production configuration cannot name these engines (``VOICEFLEET_ENGINE=tone`` makes ``voicefleet
agent`` fail with "unknown engine"). ``python -m edge_agent.engines.benchmark_only`` runs the normal
agent (same ``VOICEFLEET_*`` variables, same code path) with them registered, plus one test hook:
``VOICEFLEET_OTA_PAUSE_AFTER`` blocks an update for good after that step, so a test can SIGKILL the
agent there (``edge_agent/updater.py``).

- ``tone``: returns a short sine tone at once, so a benchmark measures the control plane, the broker
  and the agent runtime rather than synthesis.
- ``timed``: a quiet job-specific pattern (``timed_pcm``) paced as a model of the configured real-time
  factor would produce audio, so a routing benchmark can build a fleet of fast and slow agents on one
  box and measure the scheduling rather than the synthesis. Configured by ``TimedConfig``
  (``VOICEFLEET_TIMED_*``, read at start):
  ``RTF`` (0.1, synthesis seconds per audio second); ``S_PER_CHAR`` (0.06, audio seconds per input
  character); ``SLOWDOWN`` (1) and ``SLOWDOWN_AT`` (a unix timestamp: from then on the RTF is
  multiplied by the factor, so one agent can turn slow mid-run; a factor without a timestamp applies
  from the start); ``SLOWDOWN_AFTER_JOBS`` (0: the slowdown spares this many jobs first, counted from
  the engine's start, so a test can turn an agent slow after it has shown itself fast, whatever the
  machine's speed); ``LANGUAGES`` ("zh,en") and ``DIALECTS`` (""): its capabilities; ``CLONING`` and
  ``INSTRUCTIONS`` ("1" to advertise them): a stand-in for a CosyVoice3 GPU worker in routing tests;
  ``TIER`` (neural): the quality tier it claims.
"""

from __future__ import annotations

import itertools
import logging
import math
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from edge_agent import engines
from edge_agent.config import AgentSettings
from edge_agent.engines.base import (
    Engine,
    EngineUnavailable,
    SynthesisRequest,
    never_cancelled,
    refuse_unspeakable,
)
from edge_agent.engines.settings import EngineSettings
from voicefleet.protocol import LANGUAGES, Capabilities, EngineDescriptor

# -- tone --------------------------------------------------------------------------------------------

TONE_SAMPLE_RATE = 16000
_TONE = struct.pack("<800h", *(int(8000 * math.sin(2 * math.pi * 440 * i / TONE_SAMPLE_RATE)) for i in range(800)))


class BenchmarkToneEngine(Engine):
    """Zero work: a 50 ms sine tone for any request."""

    descriptor = EngineDescriptor(name="benchmark-tone", version="1", model="sine-440hz-50ms",
                                  sample_rate=TONE_SAMPLE_RATE)
    capabilities = Capabilities(languages=sorted(LANGUAGES), dialects=[], voices=["default"])

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        refuse_unspeakable(request)
        yield _TONE


# -- timed -------------------------------------------------------------------------------------------

SAMPLE_RATE = 1000  # the timed engine's: tiny payloads; only the audio's length matters to a benchmark
CHUNK_S = 0.5
CHUNK_SAMPLES = int(SAMPLE_RATE * CHUNK_S)


class TimedConfig(BaseSettings):
    """The timed engine's pace and capabilities (``VOICEFLEET_TIMED_*``; see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="VOICEFLEET_TIMED_", extra="ignore", frozen=True)

    rtf: float = 0.1
    s_per_char: float = 0.06
    slowdown: float = 1.0
    slowdown_at: float = 0.0  # unix time; 0 means from the start
    slowdown_after_jobs: int = 0  # jobs this engine serves at the healthy pace before the slowdown
    languages: Annotated[tuple[str, ...], NoDecode] = ("zh", "en")
    dialects: Annotated[tuple[str, ...], NoDecode] = ()
    # Advertise what a CosyVoice3 GPU worker offers (zero-shot cloning, style instructions), so routing
    # tests can stand in for one where no GPU or weights are: the engine still only paces its pattern.
    cloning: bool = False
    instructions: bool = False
    tier: Literal["formant", "neural", "flagship"] = "neural"  # claimed, so routing tests can rank stand-ins

    @field_validator("rtf", "s_per_char", "slowdown", "slowdown_at", mode="before")
    @classmethod
    def _number(cls, value, info: ValidationInfo):
        if not isinstance(value, str):
            return value
        if not value.strip():  # set but blank: the default
            return cls.model_fields[info.field_name].default
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError("is not a number") from None
        if number < 0:
            raise ValueError("must not be negative")
        return number

    @field_validator("languages", "dialects", mode="before")
    @classmethod
    def _names(cls, value):
        return tuple(n.strip() for n in value.split(",") if n.strip()) if isinstance(value, str) else value

    @field_validator("cloning", "instructions", mode="before")
    @classmethod
    def _flag(cls, value):
        return value == "1" if isinstance(value, str) else value

    def rtf_at(self, unix_time: float, job_index: int = 0) -> float:
        """The RTF of a job's chunk due at ``unix_time``; ``job_index`` counts this engine's jobs from 0."""
        slowed = unix_time >= self.slowdown_at and job_index >= self.slowdown_after_jobs
        return self.rtf * self.slowdown if slowed else self.rtf


def timed_config() -> TimedConfig:
    """``TimedConfig`` from the environment; EngineUnavailable naming the variable that is wrong."""
    try:
        return TimedConfig()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = f"VOICEFLEET_TIMED_{str(error['loc'][0]).upper()}"
        raw = error["input"].strip() if isinstance(error["input"], str) else error["input"]
        raise EngineUnavailable(f"{name}={raw!r} {error.get('ctx', {}).get('error', error['msg'])}") from None


def timed_pcm(text: str, offset: int, samples: int) -> bytes:
    """The timed engine's audio for ``text`` from sample ``offset``: a quiet pattern that depends on the
    text and on each sample's position, so a check can tell audio that went to the wrong job, lost a
    chunk or came in the wrong order from the right audio (silence cannot)."""
    seed = zlib.crc32(text.encode())
    return struct.pack(f"<{samples}h", *(((seed + 40503 * i) & 0x3FF) - 512 for i in range(offset, offset + samples)))


class BenchmarkTimedEngine(Engine):
    """A quiet, job-specific pattern at 1 kHz (``timed_pcm``), each 0.5 s chunk released after chunk
    seconds x RTF."""

    descriptor = EngineDescriptor(name="timed-benchmark", version="1", model="pattern-paced-by-rtf",
                                  sample_rate=SAMPLE_RATE)

    def __init__(self, config: TimedConfig | None = None):
        self.config = config if config is not None else timed_config()
        self.capabilities = Capabilities(languages=list(self.config.languages),
                                         dialects=list(self.config.dialects), voices=["default"],
                                         cloning=self.config.cloning, instructions=self.config.instructions)
        self.tier = self.config.tier
        self._jobs = itertools.count()  # next() is atomic under the GIL: concurrent slots get distinct indexes

    def audio_samples(self, text: str) -> int:
        return round(len(text) * self.config.s_per_char * SAMPLE_RATE)

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        refuse_unspeakable(request)  # at once, not at the first chunk: this is not a generator
        total = self.audio_samples(request.text.strip())
        return self._paced(request.text.strip(), total, cancelled, next(self._jobs))

    def _paced(self, text: str, total: int, cancelled: Callable[[], bool], job_index: int) -> Iterator[bytes]:
        # Deadlines are offsets from one monotonic start, so sleep overshoot never accumulates.
        start, due = time.monotonic(), 0.0
        for offset in range(0, total, CHUNK_SAMPLES):
            samples = min(CHUNK_SAMPLES, total - offset)
            due += samples / SAMPLE_RATE * self.config.rtf_at(time.time(), job_index)
            if _cancelled_while_waiting(start + due, cancelled):
                return
            yield timed_pcm(text, offset, samples)


def _cancelled_while_waiting(until: float, cancelled: Callable[[], bool], step_s: float = 0.05) -> bool:
    """Sleep until the monotonic time ``until``, looking for a cancel every ``step_s`` (a slow
    chunk may take minutes: a cancelled job must stop now, not after it)."""
    while (left := until - time.monotonic()) > 0:
        if cancelled():
            return True
        time.sleep(min(step_s, left))
    return cancelled()


# -- the registry and the agent entry point ---------------------------------------------------------

WITH_BENCHMARKS: Mapping[str, engines.EngineFactory] = MappingProxyType({
    **engines.ENGINES,
    "tone": lambda _settings, _bundle: BenchmarkToneEngine(),
    "timed": lambda _settings, _bundle: BenchmarkTimedEngine(),
})


def load_engine(spec: str, settings: EngineSettings | None = None, *, student_bundle: Path | None = None) -> Engine:
    """``edge_agent.engines.load_engine`` with the benchmark-only engines known too."""
    return engines.load_engine(spec, settings, student_bundle=student_bundle, engines=WITH_BENCHMARKS)


class BenchmarkAgentSettings(AgentSettings):
    """An agent's settings plus the test hooks that production settings do not have."""

    ota_pause_after: str | None = None  # block an update for good after this step (edge_agent/updater.py)


def main() -> int:
    """What ``voicefleet agent`` does, with the benchmark-only engines and the test hooks."""
    from edge_agent.agent import Agent

    settings = BenchmarkAgentSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Agent(settings, engines=WITH_BENCHMARKS, ota_pause_after=settings.ota_pause_after).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
