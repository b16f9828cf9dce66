"""Where job audio lives: partial PCM while a job streams, one WAV per finished job.

``AudioStore`` is the interface; ``LocalAudioStore`` keeps files in a folder. An S3-compatible
store implements the same methods (partials stay on local disk, ``finalize`` uploads).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from voicefleet.audio import SAMPLE_WIDTH, WAV_HEADER_BYTES, wav_header


class AudioIntegrityError(Exception):
    """The assembled audio does not match what the agent says it sent."""


@dataclass(frozen=True)
class StoredAudio:
    key: str
    samples: int
    bytes: int
    sha256: str


class AudioStore(Protocol):
    def append(self, job_id: str, attempt: int, seq: int, pcm: bytes) -> bool: ...
    def finalize(self, job_id: str, attempt: int, *, sample_rate: int, chunks: int,
                 sha256: str) -> StoredAudio: ...
    def discard(self, job_id: str, attempt: int) -> None: ...
    def partial_path(self, job_id: str, attempt: int) -> Path: ...
    def open_final(self, key: str): ...
    def iter_final(self, key: str, offset: int = 0) -> Iterator[bytes]: ...


class LocalAudioStore:
    """Chunks are appended in ``seq`` order; an early chunk waits in memory for its turn and a
    repeated one (QoS 1 redelivery) is ignored. Only the dispatcher thread writes."""

    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        self._next: dict[tuple[str, int], int] = {}
        self._early: dict[tuple[str, int], dict[int, bytes]] = {}

    def partial_path(self, job_id: str, attempt: int) -> Path:
        return self.root / "partial" / f"{job_id}.{attempt}.pcm"

    def final_key(self, job_id: str) -> str:
        return f"jobs/{job_id[:2]}/{job_id}.wav"

    def append(self, job_id: str, attempt: int, seq: int, pcm: bytes) -> bool:
        """Store one chunk; True when it was new."""
        k = (job_id, attempt)
        nxt = self._next.get(k, 0)
        if seq < nxt or seq in self._early.get(k, {}):
            return False
        if seq > nxt:
            self._early.setdefault(k, {})[seq] = pcm
            return True
        with open(self.partial_path(job_id, attempt), "ab") as f:
            f.write(pcm)
            nxt += 1
            early = self._early.get(k, {})
            while nxt in early:
                f.write(early.pop(nxt))
                nxt += 1
        self._next[k] = nxt
        return True

    def finalize(self, job_id: str, attempt: int, *, sample_rate: int, chunks: int,
                 sha256: str) -> StoredAudio:
        """Check the partial against the agent's count and checksum, then write the WAV."""
        k = (job_id, attempt)
        got = self._next.get(k, 0)
        part = self.partial_path(job_id, attempt)
        if chunks and (got != chunks or not part.exists()):
            raise AudioIntegrityError(f"received {got} of {chunks} audio chunks")
        digest = hashlib.sha256()
        size = 0
        key = self.final_key(job_id)
        dest = self.root / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(wav_header(sample_rate, part.stat().st_size if chunks else 0))
            if chunks:
                with open(part, "rb") as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            tmp.unlink()
            raise AudioIntegrityError("audio checksum differs from the agent's: chunks were lost or damaged")
        os.replace(tmp, dest)
        self.discard(job_id, attempt)
        return StoredAudio(key=key, samples=size // SAMPLE_WIDTH, bytes=size, sha256=sha256)

    def discard(self, job_id: str, attempt: int) -> None:
        k = (job_id, attempt)
        self._next.pop(k, None)
        self._early.pop(k, None)
        self.partial_path(job_id, attempt).unlink(missing_ok=True)

    def open_final(self, key: str):
        return open(self.root / key, "rb")

    def iter_final(self, key: str, offset: int = 0) -> Iterator[bytes]:
        """The PCM of a stored WAV from byte ``offset`` of its data."""
        with self.open_final(key) as f:
            f.seek(WAV_HEADER_BYTES + offset)
            while block := f.read(1 << 16):
                yield block

    def clear_partials(self) -> None:
        """At start-up: partial audio from before a restart cannot be trusted (its chunk
        bookkeeping was in memory); those attempts fail their checksum and are retried."""
        shutil.rmtree(self.root / "partial", ignore_errors=True)
        (self.root / "partial").mkdir(parents=True, exist_ok=True)
