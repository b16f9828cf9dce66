"""Where job audio lives: partial PCM while a job streams, one WAV per finished job.

``AudioStore`` is the interface; ``LocalAudioStore`` keeps files in a folder, which replicas share as
a network folder (NFS: docs/scaling.md). No object store is implemented: none could be tested here
(docs/scaling.md says why).
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from voicefleet.audio import SAMPLE_WIDTH, WAV_HEADER_BYTES, wav_header
from voicefleet.protocol import SAFE_ID_RE


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
    def read_partial(self, job_id: str, attempt: int, offset: int) -> bytes: ...
    def local_path(self, key: str) -> Path | None: ...  # None for a remote store: use iter_final
    def iter_final(self, key: str, offset: int = 0) -> Iterator[bytes]: ...


class LocalAudioStore:
    """Chunks are appended in ``seq`` order; an early chunk waits in memory for its turn and a
    repeated one (QoS 1 redelivery) is ignored. A job's audio stays in memory until it passes
    ``spill_bytes``, then goes on in a partial file, so short jobs cost one file write. Only the
    dispatcher thread writes; HTTP followers read concurrently through ``read_partial``."""

    def __init__(self, root: Path, spill_bytes: int = 1 << 20):
        self.root = Path(root)
        self.spill_bytes = spill_bytes
        (self.root / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._next: dict[tuple[str, int], int] = {}
        self._early: dict[tuple[str, int], dict[int, bytes]] = {}
        self._mem: dict[tuple[str, int], bytearray] = {}  # not yet spilled to the partial file
        self._dirs: set[Path] = set()  # final folders known to exist

    def partial_path(self, job_id: str, attempt: int) -> Path:
        return self.root / "partial" / f"{_safe(job_id)}.{int(attempt)}.pcm"

    def final_key(self, job_id: str) -> str:
        return f"jobs/{job_id[:2]}/{_safe(job_id)}.wav"

    def append(self, job_id: str, attempt: int, seq: int, pcm: bytes) -> bool:
        """Store one chunk; True when it was new."""
        k = (job_id, attempt)
        nxt = self._next.get(k, 0)
        if seq < nxt or seq in self._early.get(k, {}):
            return False
        if seq > nxt:
            self._early.setdefault(k, {})[seq] = pcm
            return True
        pieces = [pcm]
        nxt += 1
        early = self._early.get(k, {})
        while nxt in early:
            pieces.append(early.pop(nxt))
            nxt += 1
        self._next[k] = nxt
        self._write(k, b"".join(pieces))
        return True

    def _write(self, k: tuple[str, int], data: bytes) -> None:
        with self._lock:
            buf = self._mem.get(k)
            if buf is None and not self.partial_path(*k).exists():
                buf = self._mem[k] = bytearray()
            if buf is not None and len(buf) + len(data) <= self.spill_bytes:
                buf.extend(data)
                return
            with open(self.partial_path(*k), "ab") as f:
                if buf is not None:
                    f.write(self._mem.pop(k))
                f.write(data)

    def read_partial(self, job_id: str, attempt: int, offset: int) -> bytes:
        """The audio received so far for this attempt, from byte ``offset``."""
        with self._lock:
            buf = self._mem.get((job_id, attempt))
            if buf is not None:
                return bytes(buf[offset:])
            try:
                with open(self.partial_path(job_id, attempt), "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                return b""
        return data[: len(data) - len(data) % 2]

    def finalize(self, job_id: str, attempt: int, *, sample_rate: int, chunks: int,
                 sha256: str) -> StoredAudio:
        """Check the audio against the agent's count and checksum, then write the WAV."""
        k = (job_id, attempt)
        got = self._next.get(k, 0)
        if got == 0 and chunks and not self._early.get(k) and (stored := self._stored(job_id, sha256)) is not None:
            return stored  # a "done" handled again after its transaction failed: the WAV is already written
        if got != chunks or self._early.get(k):
            raise AudioIntegrityError(f"received {got} of {chunks} audio chunks in order")
        with self._lock:
            data = self._mem.get(k)
        if data is None:
            part = self.partial_path(job_id, attempt)
            data = part.read_bytes() if part.exists() else b""
        if hashlib.sha256(data).hexdigest() != sha256:
            raise AudioIntegrityError("audio checksum differs from the agent's: chunks were lost or damaged")
        key = self.final_key(job_id)
        dest = self.root / key
        if dest.parent not in self._dirs:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(dest.parent)
        # Written in place: nobody reads it before the artifact row that names it is committed,
        # and a retried attempt overwrites whatever a crash left.
        with open(dest, "wb") as out:
            out.write(wav_header(sample_rate, len(data)) + data)
        self.discard(job_id, attempt)
        return StoredAudio(key=key, samples=len(data) // SAMPLE_WIDTH, bytes=len(data), sha256=sha256)

    def _stored(self, job_id: str, sha256: str) -> StoredAudio | None:
        """The job's final WAV, if one is written and its audio hashes to ``sha256``."""
        key = self.final_key(job_id)
        try:
            data = (self.root / key).read_bytes()[WAV_HEADER_BYTES:]
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            return None
        return StoredAudio(key=key, samples=len(data) // SAMPLE_WIDTH, bytes=len(data), sha256=sha256)

    def discard(self, job_id: str, attempt: int) -> None:
        k = (job_id, attempt)
        self._next.pop(k, None)
        self._early.pop(k, None)
        with self._lock:
            self._mem.pop(k, None)
            self.partial_path(job_id, attempt).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        return self.root / key

    def iter_final(self, key: str, offset: int = 0) -> Iterator[bytes]:
        """The PCM of a stored WAV from byte ``offset`` of its data."""
        with open(self.root / key, "rb") as f:
            f.seek(WAV_HEADER_BYTES + offset)
            while block := f.read(1 << 16):
                yield block

    def clear_partials(self) -> None:
        """At start-up: partial audio from before a restart cannot be trusted (its chunk
        bookkeeping was in memory); those attempts fail their checksum and are retried."""
        shutil.rmtree(self.root / "partial", ignore_errors=True)
        (self.root / "partial").mkdir(parents=True, exist_ok=True)


def _safe(job_id: str) -> str:
    """A job id fit for a file name (the protocol already refuses others: this is the last line)."""
    if not SAFE_ID_RE.fullmatch(job_id):
        raise ValueError(f"job id {job_id!r} is not a storage-safe id")
    return job_id
