#!/usr/bin/env python
"""Spectrograms of WAV files, stacked top to bottom in one PNG, with numpy alone (no plotting library
is installed here): log magnitude, 0-8 kHz, 80 dB range, viridis-like colours, time to the right.
Each panel has the same time scale, so a longer file draws a wider panel; a white band separates them.

``python scripts/spectrogram.py OUT.png A.wav B.wav ...`` (docs/audio/spectrogram.png: teacher above
the student, the same sentence).
"""

from __future__ import annotations

import struct
import sys
import wave
import zlib
from pathlib import Path

import numpy as np

N_FFT, HOP, TOP_HZ, RANGE_DB, GAP = 1024, 160, 8000, 80.0, 6
# viridis at five stops, interpolated linearly
STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=float)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: 16-bit PCM expected")
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
        return pcm.reshape(-1, w.getnchannels()).mean(axis=1), w.getframerate()


def spectrogram(x: np.ndarray, rate: int) -> np.ndarray:
    """dB magnitudes, rows from high to low frequency (as drawn), columns in time."""
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, N_FFT // 2), N_FFT)[::HOP]
    mag = np.abs(np.fft.rfft(frames * np.hanning(N_FFT), axis=1))
    keep = int(TOP_HZ / (rate / N_FFT))
    db = 20 * np.log10(np.maximum(mag[:, :keep], 1e-9))
    return db.T[::-1]


def colour(db: np.ndarray, peak: float) -> np.ndarray:
    t = np.clip((db - (peak - RANGE_DB)) / RANGE_DB, 0, 1) * (len(STOPS) - 1)
    i = np.minimum(t.astype(int), len(STOPS) - 2)
    f = (t - i)[..., None]
    return (STOPS[i] * (1 - f) + STOPS[i + 1] * f).astype(np.uint8)


def write_png(path: Path, rgb: np.ndarray) -> None:
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    out, wavs = Path(argv[0]), [Path(a) for a in argv[1:]]
    specs = [spectrogram(*read_wav(p)) for p in wavs]
    peak = max(float(s.max()) for s in specs)  # one scale for all: loudness differences stay visible
    width = max(s.shape[1] for s in specs)
    rows = []
    for i, s in enumerate(specs):
        panel = np.full((s.shape[0], width, 3), 255, np.uint8)
        panel[:, :s.shape[1]] = colour(s, peak)
        rows.append(panel)
        if i < len(specs) - 1:
            rows.append(np.full((GAP, width, 3), 255, np.uint8))
    write_png(out, np.concatenate(rows))
    print(f"{out}: {width} × {sum(r.shape[0] for r in rows)} px, {len(wavs)} panels")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
