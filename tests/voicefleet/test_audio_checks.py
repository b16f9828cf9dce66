"""Voice-prompt checks on real encoded clips (numpy -> soundfile): each problem its own code."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import soundfile as sf

from benchmarks.signals import speechlike
from voicefleet.audio_checks import STORE_SR, ClipError, check_prompt

RNG = np.random.default_rng(1234)


def encode(x: np.ndarray, sr: int = 24_000, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def valid(seconds: float = 5.0, sr: int = 24_000, **kw) -> np.ndarray:
    return speechlike(seconds, sr, **kw)


def noisy(x: np.ndarray, snr_db: float) -> np.ndarray:
    """``x`` plus white noise at ``snr_db`` below its mean power, scaled to stay unclipped."""
    noise = RNG.standard_normal(len(x)) * np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10))
    y = x + noise
    return 0.5 * y / np.max(np.abs(y))


def code_of(data: bytes, filename: str = "clip.wav") -> str:
    with pytest.raises(ClipError) as info:
        check_prompt(data, filename)
    assert filename in info.value.text  # the text names the file and says what to do
    return info.value.code


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_a_speech_like_clip_passes_every_check_in_each_format(fmt: str):
    clip = check_prompt(encode(valid(), fmt=fmt), f"clip.{fmt.lower()}")
    assert clip.format == fmt
    assert clip.duration_s == pytest.approx(5.0, abs=0.06)  # MP3 adds encoder padding
    assert clip.sample_rate == 24_000 and clip.channels == 1
    assert clip.snr_db > 40 and clip.active_fraction > 0.6


def test_the_stored_form_is_24k_mono_16bit_at_minus_1_dbfs_and_hashed_by_its_samples():
    clip = check_prompt(encode(valid(sr=48_000), sr=48_000, subtype="PCM_24"), "clip.wav")
    pcm, sr = sf.read(io.BytesIO(clip.wav), dtype="int16")
    info = sf.info(io.BytesIO(clip.wav))
    assert (sr, info.channels, info.subtype) == (STORE_SR, 1, "PCM_16")
    assert 20 * np.log10(np.max(np.abs(pcm)) / 32767) == pytest.approx(-1.0, abs=0.01)
    assert clip.sha256 == hashlib.sha256(pcm.astype("<i2").tobytes()).hexdigest()
    assert len(clip.samples_16k) == pytest.approx(5.0 * 16_000, abs=2)


def test_the_same_samples_as_wav_or_flac_have_one_content_hash():
    pcm = (valid(seed=3) * 32767).astype(np.int16)
    assert check_prompt(encode(pcm, fmt="WAV")).sha256 == check_prompt(encode(pcm, fmt="FLAC")).sha256
    assert check_prompt(encode(pcm)).sha256 != check_prompt(encode((valid(seed=4) * 32767).astype(np.int16))).sha256


def test_stereo_is_mixed_to_mono_and_accepted():
    x = valid(seed=5)
    clip = check_prompt(encode(np.stack([x, 0.6 * x], axis=1)), "stereo.wav")
    assert clip.channels == 2 and clip.snr_db > 40


def test_more_than_two_channels_or_cancelling_channels_are_bad_channels():
    x = valid(seed=6)
    assert code_of(encode(np.stack([x, x, x], axis=1)), "surround.wav") == "bad_channels"
    assert code_of(encode(np.stack([x, -x], axis=1)), "inverted.wav") == "bad_channels"


@pytest.mark.parametrize(("case", "data", "code"), [
    ("silence", lambda: encode(np.zeros(5 * 24_000)), "mostly_silent"),
    ("dither only", lambda: encode(RNG.standard_normal(5 * 24_000) * 1e-4), "mostly_silent"),
    ("one second of speech, four of silence", lambda: encode(np.concatenate([valid(1.0), np.zeros(4 * 24_000)])),
     "mostly_silent"),
    ("heavy clipping", lambda: encode(np.clip(valid() * 8, -1, 1)), "clipped"),
    ("clipped then turned down", lambda: encode(0.5 * np.clip(valid() * 8, -1, 1)), "clipped"),
    ("1 s", lambda: encode(valid(1.0)), "too_short"),
    ("40 s", lambda: encode(valid(40.0)), "too_long"),
    ("8 kHz", lambda: encode(valid(sr=8000), sr=8000), "low_sample_rate"),
    ("white noise at 0 dB SNR", lambda: encode(noisy(valid(), 0.0)), "noisy"),
    ("white noise at 10 dB SNR", lambda: encode(noisy(valid(), 10.0)), "noisy"),
    ("random bytes", lambda: RNG.bytes(20_000), "undecodable"),
    ("a text file", lambda: b"This is a transcript, not audio.\n" * 100, "undecodable"),
    ("empty", lambda: b"", "undecodable"),
    ("a truncated FLAC", lambda: encode(valid(), fmt="FLAC")[:5000] + RNG.bytes(5000), "undecodable"),
    ("AIFF (not accepted)", lambda: encode(valid(), fmt="AIFF"), "undecodable"),
])
def test_each_problem_has_its_own_code(case: str, data, code: str):
    assert code_of(data()) == code, case


def test_moderate_noise_passes_with_its_snr_estimated():
    clip = check_prompt(encode(noisy(valid(seed=8), 25.0)))
    assert 20 < clip.snr_db < 30  # the estimate is near the true 25 dB


def test_lengths_at_the_limits_pass():
    assert check_prompt(encode(valid(3.05))).duration_s == pytest.approx(3.05, abs=0.01)
    assert check_prompt(encode(valid(29.9))).duration_s == pytest.approx(29.9, abs=0.01)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_a_wav_cut_short_is_refused_as_truncated_with_both_durations(subtype: str):
    """libsndfile reads a WAV whose data chunk ends early without a word: 5.9 s declared, 3.1 s held.
    The transcript would no longer match the audio, so the clip is refused, not repaired."""
    whole = encode(valid(5.9), subtype=subtype)
    cut = whole[: 44 + (len(whole) - 44) * 31 // 59]
    with pytest.raises(ClipError) as info:
        check_prompt(cut, "cut.wav")
    assert info.value.code == "truncated"
    assert "5.9 s" in info.value.text and "3.1 s" in info.value.text and "cut.wav" in info.value.text


def test_a_wav_of_unknown_length_or_with_chunks_after_its_data_is_not_truncated():
    whole = encode(valid(5.0))
    streamed = bytearray(whole)  # a streaming writer leaves the sizes at 0xFFFFFFFF
    streamed[4:8] = streamed[40:44] = b"\xff\xff\xff\xff"
    assert check_prompt(bytes(streamed)).duration_s == pytest.approx(5.0, abs=0.01)
    tail = b"LIST" + (12).to_bytes(4, "little") + b"INFOISFT\x02\x00\x00\x00x\x00"
    with_list = bytearray(whole + tail)
    with_list[4:8] = (len(with_list) - 8).to_bytes(4, "little")
    assert check_prompt(bytes(with_list)).duration_s == pytest.approx(5.0, abs=0.01)
