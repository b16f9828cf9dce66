"""Audio shared by both sides: 16-bit mono PCM, WAV framing and simple checks."""

from __future__ import annotations

import struct
from array import array
from math import sqrt

SAMPLE_WIDTH = 2  # bytes: every engine speaks int16 little-endian mono
WAV_HEADER_BYTES = 44
STREAMING_SIZE = 0xFFFFFFFF  # RIFF convention for "length unknown" while a stream is live


def wav_header(sample_rate: int, data_bytes: int | None = None) -> bytes:
    """A canonical 44-byte WAV header; ``data_bytes=None`` marks a stream of unknown length."""
    data = STREAMING_SIZE if data_bytes is None else data_bytes
    riff = STREAMING_SIZE if data_bytes is None else 36 + data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", riff, b"WAVE", b"fmt ", 16, 1, 1,
        sample_rate, sample_rate * SAMPLE_WIDTH, SAMPLE_WIDTH, 16, b"data", data,
    )


def pcm_rms(pcm: bytes) -> float:
    """Root mean square of int16 PCM, in sample units (0..32768)."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if not samples:
        return 0.0
    return sqrt(sum(s * s for s in samples) / len(samples))


def pcm_seconds(n_bytes: int, sample_rate: int) -> float:
    return n_bytes / (SAMPLE_WIDTH * sample_rate)
