"""Teacher runs: every phrase of the corpus rendered once and stored as one flat .npz.

Arrays are concatenated with offsets (ids, durations, int16 audio) so a dataset of hours loads
with one read and slices without copies. Rendering is spread over worker processes, each with
its own single-threaded teacher.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.distill.teachers import HOP, SAMPLE_RATE, Teacher, load_teacher
from voicefleet.text.mandarin import FrontendError, phrases

_teacher: Teacher | None = None


def _init_worker(name: str) -> None:
    global _teacher
    _teacher = load_teacher(name, threads=1)


def _render(sentence: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    try:
        units = phrases(sentence)
    except FrontendError:
        return []
    out = []
    for phrase in units:
        utt = _teacher.render(phrase)
        out.append((utt.ids.astype(np.int16), utt.durations.astype(np.int16),
                    (np.clip(utt.audio, -1, 1) * 32767).astype(np.int16)))
    return out


def build(teacher: str, sentences: list[str], out: Path, workers: int | None = None) -> dict:
    """Render ``sentences`` with ``teacher`` into ``out`` (.npz + .json); returns the summary."""
    workers = workers or max(1, (os.cpu_count() or 1))
    if workers == 1:
        _init_worker(teacher)
        rendered = [_render(s) for s in sentences]
    else:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(teacher,)) as pool:
            rendered = list(pool.map(_render, sentences, chunksize=8))
    items = [item for group in rendered for item in group]
    if not items:
        raise ValueError("the teacher rendered nothing: no sentence had speakable Mandarin text")
    ids, durations, audio = zip(*items, strict=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, ids=np.concatenate(ids), durations=np.concatenate(durations), audio=np.concatenate(audio),
             id_offsets=_offsets(ids), audio_offsets=_offsets(audio))
    summary = {"teacher": teacher, "sentences": len(sentences), "phrases": len(items),
               "audio_seconds": round(sum(len(a) for a in audio) / SAMPLE_RATE, 1),
               "sample_rate": SAMPLE_RATE, "hop": HOP}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _offsets(arrays) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)


@dataclass
class Dataset:
    ids: list[np.ndarray]
    durations: list[np.ndarray]
    audio: list[np.ndarray]  # float32

    @classmethod
    def load(cls, path: Path) -> Dataset:
        with np.load(path) as npz:  # each npz[key] re-reads the file: take every array exactly once
            data = {key: npz[key] for key in npz.files}
        io, ao = data["id_offsets"], data["audio_offsets"]
        ids = [data["ids"][io[i]:io[i + 1]].astype(np.int64) for i in range(len(io) - 1)]
        durations = [data["durations"][io[i]:io[i + 1]].astype(np.int64) for i in range(len(io) - 1)]
        audio = [data["audio"][ao[i]:ao[i + 1]].astype(np.float32) / 32767.0 for i in range(len(ao) - 1)]
        for d, a in zip(durations, audio, strict=True):
            if d.sum() * HOP != len(a):
                raise ValueError(f"{path}: durations ({d.sum()} frames) do not match audio ({len(a)} samples)")
        return cls(ids, durations, audio)

    def __len__(self) -> int:
        return len(self.ids)
