"""Synthetic test signals for tests and benchmarks (never for users, and nothing in production
imports this module): ``speechlike`` stands in for a recorded voice where real speech would be a
large, licensed fixture."""

from __future__ import annotations

import numpy as np

from voicefleet.audio_checks import STORE_SR

_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def speechlike(seconds: float, sr: int = STORE_SR, *, f0: float = 120.0, formant_scale: float = 1.0,
               seed: int = 0, level: float = 0.5) -> np.ndarray:
    """A deterministic speech-like float signal for tests and benchmarks (never for users): voiced
    syllables (harmonics of a wobbling ``f0`` shaped by vowel formants times ``formant_scale``),
    fricative-like noise bursts and short pauses at -70 dBFS. Same ``seed`` and ``formant_scale``
    with another ``f0`` gives the same utterance at another pitch."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    total = int(seconds * sr)
    while sum(len(p) for p in out) < total:
        out.append(_syllable(rng, sr, f0, formant_scale))
        if rng.random() < 0.5:
            burst = np.diff(rng.standard_normal(int(sr * rng.uniform(0.04, 0.08)) + 1)) * 0.08
            out.append(burst * np.hanning(len(burst)))
        out.append(rng.standard_normal(int(sr * rng.uniform(0.03, 0.1))) * 10 ** (-70 / 20))
    x = np.concatenate(out)[:total]
    return x * (level / np.max(np.abs(x)))


def _syllable(rng: np.random.Generator, sr: int, f0: float, formant_scale: float) -> np.ndarray:
    n = int(sr * rng.uniform(0.15, 0.3))
    t = np.arange(n) / sr
    contour = f0 * (1.0 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6.3)))
    phase = 2 * np.pi * np.cumsum(contour) / sr
    formants = np.array(_VOWELS[rng.integers(len(_VOWELS))]) * formant_scale
    harmonics = np.arange(1, int(0.45 * sr / f0))
    # Amplitude of harmonic h: sum of resonances at the formants, evaluated at its mean frequency.
    freqs = harmonics * f0
    gains = sum(1.0 / (1.0 + ((freqs - fc) / (60.0 + 0.06 * fc)) ** 2) for fc in formants) / np.sqrt(harmonics)
    voiced = (gains[:, None] * np.sin(harmonics[:, None] * phase[None, :])).sum(axis=0)
    return voiced * np.hanning(n) ** 0.3
