"""BenchmarkToneEngine: a zero-work engine for measuring the dispatch path, never for speech.

It returns a short sine tone at once, so a benchmark measures the control plane, the broker
and the agent runtime rather than synthesis.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator

from edge_agent.engines.base import SynthesisRequest, never_cancelled
from voicefleet.protocol import LANGUAGES, Capabilities, EngineDescriptor

SAMPLE_RATE = 16000
_TONE = struct.pack("<800h", *(int(8000 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)) for i in range(800)))


class BenchmarkToneEngine:
    descriptor = EngineDescriptor(name="benchmark-tone", version="1", model="sine-440hz-50ms",
                                  sample_rate=SAMPLE_RATE)
    capabilities = Capabilities(languages=sorted(LANGUAGES), dialects=[], voices=["default"])

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        yield _TONE
