"""What an update checks before it may switch: the command's shape, and that the new model speaks
(a test phrase of the right length, neither silent nor clipped). ``UpdateFailed`` says why not.
Whether the phrase can be understood is judged by the control plane, from the audio the ``tested``
report carries: the recogniser is too heavy for a device."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from voicefleet import protocol as p
from voicefleet.errors import CodedError
from voicefleet.protocol.ota import MAX_TEST_AUDIO_S, TEST_AUDIO_RATE, TestAudio

TEST_TEXT = "今天下午三点提醒我开会，请准备好材料。"
# Test synthesis: seconds of audio per Chinese character (Mandarin runs near 0.2-0.3), the quietest
# RMS allowed, and the share of full-scale samples allowed (NaN/inf come out as zeros or full scale).
SECONDS_PER_CHAR = (0.06, 0.8)
MIN_RMS_DBFS = -45.0
MAX_FULL_SCALE = 0.01


class UpdateFailed(CodedError):
    """An update cannot go on: ``code`` for the control plane, ``text`` for people."""


def check_command(cmd: p.OtaCommand) -> None:
    from voicefleet.bundle import MANIFEST, MAX_BUNDLE_BYTES, SIGNATURE

    names = [f.name for f in cmd.files]
    if not cmd.base_url or not cmd.base_url.startswith(("http://", "https://")):
        raise UpdateFailed("bad_command", f"base_url {cmd.base_url!r} must be an http(s) URL")
    if MANIFEST not in names or SIGNATURE not in names or len(set(names)) != len(names):
        raise UpdateFailed("bad_command", f"files must list each bundle file once, {MANIFEST} and {SIGNATURE} "
                                          f"included (got {names})")
    if any(n.endswith(".part") for n in names) or sum(f.size for f in cmd.files) > MAX_BUNDLE_BYTES:
        raise UpdateFailed("bad_command", f"file names must not end in .part and the bundle must stay under "
                                          f"{MAX_BUNDLE_BYTES} bytes")


def speak_test_phrase(slot: Path, settings=None) -> tuple[dict[str, float], TestAudio]:
    """Speak TEST_TEXT with a student engine built from ``slot`` (``settings``: the process's
    EngineSettings); its figures and what it said, or UpdateFailed why not."""
    from edge_agent.engines.base import EngineError, SynthesisRequest
    from edge_agent.engines.student import StudentEngine

    try:
        engine = StudentEngine(bundle=slot, settings=settings)
        t0 = time.perf_counter()
        first, chunks = None, []
        for pcm in engine.synthesize(SynthesisRequest(text=TEST_TEXT)):
            first = first if first is not None else time.perf_counter() - t0
            chunks.append(pcm)
        synth_s = time.perf_counter() - t0
    except EngineError as exc:
        raise UpdateFailed("test_failed", f"the new model could not speak: {exc.text}") from exc
    audio = np.frombuffer(b"".join(chunks), "<i2")
    if problem := audio_problem(audio, engine.sample_rate, TEST_TEXT):
        raise UpdateFailed("test_failed", f"the new model's test phrase {problem}")
    audio_s = len(audio) / engine.sample_rate
    figures = {"rtf": round(synth_s / audio_s, 5), "first_chunk_s": round(first or 0.0, 5),
               "audio_s": round(audio_s, 3)}
    said = resample(audio[:int(MAX_TEST_AUDIO_S * engine.sample_rate)], engine.sample_rate, TEST_AUDIO_RATE)
    return figures, TestAudio.of(TEST_TEXT, said.tobytes(), TEST_AUDIO_RATE)


def resample(audio: np.ndarray, rate: int, to: int) -> np.ndarray:
    """int16 ``audio`` at ``to`` Hz, band-limited through one FFT (a phrase is short)."""
    if rate == to or audio.size == 0:
        return audio.astype("<i2")
    n = round(audio.size * to / rate)
    spectrum = np.fft.rfft(audio.astype(np.float64))[:n // 2 + 1]
    out = np.fft.irfft(spectrum, n) * (n / audio.size)
    return np.clip(np.rint(out), -32768, 32767).astype("<i2")


def audio_problem(audio: np.ndarray, sample_rate: int, text: str) -> str | None:
    """What is wrong with int16 ``audio`` as speech of ``text`` (a phrase), or None."""
    if audio.size == 0:
        return "is empty"
    chars = sum(1 for c in text if "\u4e00" <= c <= "\u9fff") or len(text)
    seconds, (lo, hi) = audio.size / sample_rate, SECONDS_PER_CHAR
    if not lo * chars <= seconds <= hi * chars:
        return f"lasts {seconds:.2f}s for {chars} characters (expected {lo * chars:.1f}-{hi * chars:.1f}s)"
    full = float(np.mean(np.abs(audio.astype(np.int32)) >= 32767))
    if full > MAX_FULL_SCALE:
        return f"has {full:.0%} of its samples at full scale (clipped, or not finite before conversion)"
    rms = float(np.sqrt(np.mean((audio / 32768.0) ** 2)))
    dbfs = 20 * np.log10(rms) if rms > 0 else -np.inf
    if dbfs < MIN_RMS_DBFS:
        return f"is silent ({dbfs:.1f} dBFS RMS, at least {MIN_RMS_DBFS:.0f} expected)"
    return None
