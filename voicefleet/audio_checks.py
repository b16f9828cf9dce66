"""Checks on a voice-prompt clip before it becomes a cloning voice, and its normalised form.

A zero-shot cloning engine copies whatever is in the prompt: silence, clipping, hum and room
noise come back in every sentence it speaks. ``check_prompt`` decodes an upload with libsndfile
(WAV, FLAC, OGG Vorbis/Opus, MP3 via libsndfile >= 1.1's mpg123) and refuses it with one
``ClipError(code, text)`` per problem, the text saying what to fix (a WAV cut short, which libsndfile
reads without a word, is ``truncated``). Measurements, all on the
decoded clip mixed to mono at its own sample rate, in 30 ms frames:

- silence: a frame is *active* when its RMS is within ``ACTIVE_DB`` of the clip's loud level
  (95th percentile of frame levels, so one click does not set it) and above ``ABS_FLOOR_DBFS``
  (so digital silence with dither is not "active" relative to itself).
- clipping: samples at +/- full scale, plus samples in flat runs (3+ equal values) near the
  clip's own peak (a clip clipped, then turned down, has plateaus below full scale), over all
  channels before mixing (mixing would hide one clipped channel).
- SNR: noise power is the mean power of the quietest 10% of frames (pauses between words), speech
  power the mean power of the active frames minus that noise. It is an estimate: for speech with
  no pause at all the quietest frames hold quiet speech and the figure comes out low, so the
  threshold (15 dB) is far below what a usable studio or phone recording gives (30-60 dB).

The accepted clip is stored as 24 kHz mono 16-bit WAV with its peak at -1 dBFS; its content hash is
the SHA-256 of those int16 samples, so the same samples uploaded as WAV or as FLAC hash the same (a
lossy re-encode or a gain change is another clip), and the 16 kHz signal for the speaker embedding is
derived from them (hash -> embedding is a function, which makes the hash a sound cache key).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass

import numpy as np

from voicefleet.errors import CodedError

STORE_SR = 24_000
EMBED_SR = 16_000
MIN_S, MAX_S = 3.0, 30.0
MIN_SAMPLE_RATE = 16_000
MAX_CHANNELS = 2  # more is a multitrack/surround export; its downmix can comb-filter the voice
FORMATS = {"WAV", "WAVEX", "RF64", "W64", "FLAC", "OGG", "MP3"}
FRAME_S = 0.03
ACTIVE_DB = 45.0
ABS_FLOOR_DBFS = -60.0
MIN_ACTIVE_FRACTION = 0.40
FULL_SCALE = 0.999  # int16 32735 and up
MAX_CLIPPED_FRACTION = 0.005
MIN_SNR_DB = 15.0
MAX_SNR_DB = 99.0  # digital silence between words would give infinity (not JSON)
PEAK_DBFS = -1.0
_NOISE_FLOOR_POWER = 1e-10  # -100 dBFS, about int16's quantisation floor


class ClipError(CodedError):
    """A clip that cannot be a voice prompt: ``code`` for programs, ``text`` for people."""


@dataclass(frozen=True)
class CheckedClip:
    duration_s: float
    sample_rate: int  # as uploaded
    channels: int  # as uploaded
    format: str  # libsndfile's name: WAV, FLAC, OGG, MP3
    snr_db: float
    active_fraction: float
    wav: bytes  # 24 kHz mono int16 WAV, peak at -1 dBFS
    sha256: str  # of the int16 samples in ``wav`` (content hash)
    samples_16k: np.ndarray  # float32 mono, derived from the stored samples (embedding input)


def check_prompt(data: bytes, filename: str | None = None) -> CheckedClip:
    """Decode and check an uploaded voice prompt; raises ``ClipError`` naming the first problem."""
    name = filename or "the upload"
    audio, sr, fmt = _decode(data, name)
    channels = audio.shape[1]
    if channels > MAX_CHANNELS:
        raise ClipError("bad_channels", f"{name} has {channels} channels; export the voice as mono or stereo")
    if sr < MIN_SAMPLE_RATE:
        raise ClipError("low_sample_rate", f"{name} is sampled at {sr} Hz; record or export at 16 kHz or more "
                        "(upsampling a phone-quality 8 kHz clip does not bring back the missing band)")
    duration = audio.shape[0] / sr
    if duration < MIN_S:
        raise ClipError("too_short", f"{name} is {duration:.1f} s; give {MIN_S:.0f} to {MAX_S:.0f} s of speech")
    if duration > MAX_S:
        raise ClipError("too_long", f"{name} is {duration:.1f} s; trim it to at most {MAX_S:.0f} s of speech")
    mono = _downmix(audio, name)
    db = frame_db(mono, sr)
    active = _active(db)
    _check_silence(active, name)
    _check_clipping(audio, name)
    snr = estimate_snr_db(db, active)
    if snr < MIN_SNR_DB:
        raise ClipError("noisy", f"{name} has an estimated SNR of {snr:.1f} dB (need {MIN_SNR_DB:.0f}); record in a "
                        "quieter room, closer to the microphone, without music or noise reduction artefacts")
    pcm = _normalised_pcm(mono, sr)
    return CheckedClip(duration_s=round(duration, 3), sample_rate=sr, channels=channels, format=fmt,
                       snr_db=round(snr, 1), active_fraction=round(float(active.mean()), 3),
                       wav=_wav_bytes(pcm), sha256=hashlib.sha256(pcm.astype("<i2").tobytes()).hexdigest(),
                       samples_16k=_resample(pcm.astype(np.float64) / 32768.0, STORE_SR, EMBED_SR).astype(np.float32))


def _decode(data: bytes, name: str) -> tuple[np.ndarray, int, str]:
    """(frames x channels float64, sample rate, format); ``undecodable`` for anything libsndfile refuses."""
    import soundfile as sf

    help_ = "upload a WAV, FLAC, OGG or MP3 recording"
    if not data:
        raise ClipError("undecodable", f"{name} is empty; {help_}")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            fmt = f.format
            if fmt not in FORMATS:
                raise ClipError("undecodable", f"{name} is {fmt} audio, which is not accepted; {help_}")
            audio = f.read(dtype="float64", always_2d=True)
            sr = f.samplerate
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        if isinstance(exc, ClipError):
            raise
        why = str(exc).rsplit(": ", 1)[-1].strip() or "not audio"  # drop libsndfile's "<BytesIO object>"
        raise ClipError("undecodable", f"{name} could not be decoded ({why}); {help_}") from None
    if not np.all(np.isfinite(audio)):
        raise ClipError("undecodable", f"{name} has NaN or infinite samples; re-export it as 16- or 24-bit PCM")
    declared = wav_declared_frames(data)
    if declared is not None and declared > audio.shape[0]:
        # Refused, not repaired: the transcript would no longer match what is left of the audio.
        raise ClipError("truncated", f"{name} is cut short: its header says {declared / sr:.1f} s of audio but it "
                        f"holds {audio.shape[0] / sr:.1f} s (an interrupted recording, copy or upload); upload the "
                        "whole file again")
    return audio, sr, fmt


_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # what streaming writers leave in a size they could not go back to fill


def wav_declared_frames(data: bytes) -> int | None:
    """The frames a RIFF/RIFX/RF64 WAV's header declares in its data chunk; None for other formats or
    an unknown length. libsndfile clamps a data chunk that runs past the end of the file silently."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX", b"RF64") or data[8:12] != b"WAVE":
        return None
    order = "big" if data[:4] == b"RIFX" else "little"
    pos, block_align, ds64_size = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], order)
        body = data[pos + 8:pos + 8 + size]
        if cid == b"ds64" and len(body) >= 16:
            ds64_size = int.from_bytes(body[8:16], "little")
        elif cid == b"fmt " and len(body) >= 14:
            block_align = int.from_bytes(body[12:14], order)
        elif cid == b"data":
            if data[:4] == b"RF64" and size == 0xFFFFFFFF:
                size = ds64_size or 0
            if size in _UNKNOWN_SIZES or not block_align:
                return None
            return size // block_align
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


def _downmix(audio: np.ndarray, name: str) -> np.ndarray:
    mono = audio.mean(axis=1)
    if audio.shape[1] > 1:
        # A phase-inverted channel cancels the voice in the mix: the clip would "pass" as silence or noise.
        each = float(np.mean(audio**2))
        if each > 0 and float(np.mean(mono**2)) < 0.1 * each:
            raise ClipError("bad_channels", f"{name}'s channels cancel when mixed to mono (one is phase-inverted); "
                            "export a single channel")
    return mono


def frame_db(x: np.ndarray, sr: int, frame_s: float = FRAME_S) -> np.ndarray:
    """RMS level of each whole ``frame_s`` frame, dBFS (power floored at -200 dB)."""
    n = max(1, int(sr * frame_s))
    frames = x[: len(x) // n * n].reshape(-1, n)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


def _active(db: np.ndarray) -> np.ndarray:
    loud = float(np.percentile(db, 95))
    return (db > loud - ACTIVE_DB) & (db > ABS_FLOOR_DBFS)


def _check_silence(active: np.ndarray, name: str) -> None:
    frac = float(active.mean())
    if frac < MIN_ACTIVE_FRACTION:
        raise ClipError("mostly_silent", f"only {frac:.0%} of {name} is speech (need {MIN_ACTIVE_FRACTION:.0%}); "
                        "trim the silence, or record louder and closer to the microphone")


def clipped_fraction(audio: np.ndarray) -> float:
    """Fraction of samples (all channels) at full scale or in flat runs of 3+ near the clip's peak."""
    a = np.abs(audio)
    at_full = a >= FULL_SCALE
    peak = float(a.max())
    if peak > 0:
        high = a >= 0.98 * peak
        flat = np.zeros_like(at_full)
        same = (audio[1:-1] == audio[:-2]) & (audio[1:-1] == audio[2:]) & high[1:-1]
        flat[1:-1] |= same  # the middle sample of each run of three equal samples near the peak
        at_full |= flat
    return float(at_full.mean())


def _check_clipping(audio: np.ndarray, name: str) -> None:
    frac = clipped_fraction(audio)
    if frac > MAX_CLIPPED_FRACTION:
        raise ClipError("clipped", f"{frac:.1%} of {name}'s samples are clipped (limit {MAX_CLIPPED_FRACTION:.1%}); "
                        "record again with the input gain lower (peaks around -6 dBFS)")


def estimate_snr_db(db: np.ndarray, active: np.ndarray) -> float:
    """Speech-to-noise ratio from frame levels: see the module docstring for the estimate."""
    power = 10.0 ** (db / 10.0)
    k = max(1, len(power) // 10)
    noise = max(float(np.mean(np.sort(power)[:k])), _NOISE_FLOOR_POWER)
    speech = float(np.mean(power[active])) if active.any() else 0.0
    if speech <= noise:
        return -MAX_SNR_DB if speech <= 0 else 10.0 * math.log10(speech / noise) - 10.0  # noise-only: far below
    return min(MAX_SNR_DB, 10.0 * math.log10((speech - noise) / noise))


def _resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(sr, target)
    return resample_poly(x, target // g, sr // g)


def _normalised_pcm(mono: np.ndarray, sr: int) -> np.ndarray:
    """24 kHz int16 with the peak at ``PEAK_DBFS`` (after resampling, whose overshoot would clip)."""
    y = _resample(mono, sr, STORE_SR)
    peak = float(np.max(np.abs(y)))
    y = y * (10.0 ** (PEAK_DBFS / 20.0) / peak)
    return np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)


def _wav_bytes(pcm: np.ndarray) -> bytes:
    from voicefleet.audio import wav_header

    data = pcm.astype("<i2").tobytes()
    return wav_header(STORE_SR, len(data)) + data
