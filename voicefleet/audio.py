"""Audio shared by both sides: 16-bit mono PCM and its WAV framing."""

from __future__ import annotations

import struct

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


def pcm_seconds(n_bytes: int, sample_rate: int) -> float:
    return n_bytes / (SAMPLE_WIDTH * sample_rate)
