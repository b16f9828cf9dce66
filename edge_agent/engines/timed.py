"""BenchmarkTimedEngine: a benchmark-only engine whose synthesis takes a set wall time, never for speech.

It yields silence, but paced as a model of the configured real-time factor would produce audio,
so a routing benchmark can build a fleet of fast and slow agents on one box and measure the
scheduling rather than the synthesis. Configured from the environment (read at start):

- ``VOICEFLEET_TIMED_RTF`` (0.1): synthesis seconds per audio second.
- ``VOICEFLEET_TIMED_S_PER_CHAR`` (0.06): audio seconds per input character.
- ``VOICEFLEET_TIMED_SLOWDOWN`` (1) and ``VOICEFLEET_TIMED_SLOWDOWN_AT`` (a unix timestamp): from
  that moment on the RTF is multiplied by the factor, so one agent can turn slow mid-run
  (a factor without a timestamp applies from the start).
- ``VOICEFLEET_TIMED_LANGUAGES`` ("zh,en") and ``VOICEFLEET_TIMED_DIALECTS`` (""): its capabilities.
- ``VOICEFLEET_TIMED_CLONING`` and ``VOICEFLEET_TIMED_INSTRUCTIONS`` ("1" to advertise them): a stand-in
  for a CosyVoice3 GPU worker in routing tests (no GPU or weights here); it still only paces silence.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from edge_agent.engines.base import EngineError, EngineUnavailable, SynthesisRequest, never_cancelled
from voicefleet.protocol import Capabilities, EngineDescriptor

SAMPLE_RATE = 1000  # tiny payloads; only the audio's length matters to a benchmark
CHUNK_S = 0.5
CHUNK_SAMPLES = int(SAMPLE_RATE * CHUNK_S)


@dataclass(frozen=True)
class TimedConfig:
    rtf: float = 0.1
    s_per_char: float = 0.06
    slowdown: float = 1.0
    slowdown_at: float = 0.0  # unix time; 0 means from the start
    languages: tuple[str, ...] = ("zh", "en")
    dialects: tuple[str, ...] = ()
    # Advertise what a CosyVoice3 GPU worker offers (zero-shot cloning, style instructions), so routing
    # tests can stand in for one where no GPU or weights are: the engine still only paces silence.
    cloning: bool = False
    instructions: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TimedConfig:
        return cls(rtf=_number(env, "RTF", cls.rtf), s_per_char=_number(env, "S_PER_CHAR", cls.s_per_char),
                   slowdown=_number(env, "SLOWDOWN", cls.slowdown),
                   slowdown_at=_number(env, "SLOWDOWN_AT", cls.slowdown_at),
                   languages=_names(env.get("VOICEFLEET_TIMED_LANGUAGES", "zh,en")),
                   dialects=_names(env.get("VOICEFLEET_TIMED_DIALECTS", "")),
                   cloning=env.get("VOICEFLEET_TIMED_CLONING", "") == "1",
                   instructions=env.get("VOICEFLEET_TIMED_INSTRUCTIONS", "") == "1")

    def rtf_at(self, unix_time: float) -> float:
        return self.rtf * self.slowdown if unix_time >= self.slowdown_at else self.rtf


def _number(env: Mapping[str, str], key: str, default: float) -> float:
    name = f"VOICEFLEET_TIMED_{key}"
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise EngineUnavailable(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise EngineUnavailable(f"{name}={raw!r} must not be negative")
    return value


def _names(raw: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in raw.split(",") if n.strip())


class BenchmarkTimedEngine:
    """Benchmark-only: silence at 1 kHz, each 0.5 s chunk released after chunk seconds x RTF."""

    descriptor = EngineDescriptor(name="timed-benchmark", version="1", model="silence-paced-by-rtf",
                                  sample_rate=SAMPLE_RATE)

    def __init__(self, config: TimedConfig | None = None):
        self.config = config or TimedConfig.from_env()
        self.capabilities = Capabilities(languages=list(self.config.languages),
                                         dialects=list(self.config.dialects), voices=["default"],
                                         cloning=self.config.cloning, instructions=self.config.instructions)

    def audio_samples(self, text: str) -> int:
        return round(len(text) * self.config.s_per_char * SAMPLE_RATE)

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        total = self.audio_samples(request.text.strip())
        if total == 0:
            raise EngineError("empty_text", "the text is empty or only whitespace; give words to speak")
        return self._paced(total, cancelled)

    def _paced(self, total: int, cancelled: Callable[[], bool]) -> Iterator[bytes]:
        # Deadlines are offsets from one monotonic start, so sleep overshoot never accumulates.
        start, due = time.monotonic(), 0.0
        for offset in range(0, total, CHUNK_SAMPLES):
            samples = min(CHUNK_SAMPLES, total - offset)
            due += samples / SAMPLE_RATE * self.config.rtf_at(time.time())
            time.sleep(max(0.0, start + due - time.monotonic()))
            if cancelled():
                return
            yield bytes(2 * samples)
