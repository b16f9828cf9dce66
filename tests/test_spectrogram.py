"""scripts/spectrogram.py (docs/audio/spectrogram.png): a tone draws a bright line at its height."""

from __future__ import annotations

import struct
import subprocess
import sys
import wave
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _tone(path: Path, hz: float, seconds: float, rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(2 * np.pi * hz * t) * 12000).astype("<i2").tobytes())


def _read_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (size,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunks[kind] = chunks.get(kind, b"") + data[pos + 8:pos + 8 + size]
        pos += 12 + size
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + 3 * width)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return rows[:, 1:].reshape(height, width, 3)


def test_two_tones_draw_two_panels_with_a_line_each_at_its_frequency(tmp_path: Path):
    _tone(tmp_path / "a.wav", 1000, 1.0)
    _tone(tmp_path / "b.wav", 4000, 0.5)
    out = tmp_path / "s.png"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "spectrogram.py"), str(out), str(tmp_path / "a.wav"),
                    str(tmp_path / "b.wav")], check=True, capture_output=True)
    image = _read_png(out)
    panel = (image.shape[0] - 6) // 2  # two panels and the white band between them
    for top, hz, seconds in ((0, 1000, 1.0), (panel + 6, 4000, 0.5)):
        brightness = image[top:top + panel, :, 1].astype(int)  # green grows with level in the colour map
        cols = int(seconds * 16000 / 160) - 5  # the tone's columns; the shorter panel is padded white
        row = int(np.argmax(brightness[:, :cols].mean(axis=1)))
        expected = panel - 1 - hz / (16000 / 1024)  # rows run from 8 kHz at the top down to 0 Hz
        assert abs(row - expected) <= 2, (hz, row, expected)
    assert (image[panel:panel + 6] == 255).all()  # the band between panels
