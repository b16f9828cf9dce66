"""Rendered phrases on disk, so a hub repeats its common sentences instantly and with no model run.

One entry is ``<key>.wav`` (a complete WAV, its header carries the rate) plus ``<key>.json`` (what
was said, by which model). The JSON is written last, so an entry without it is a torn write and is
dropped on start. The wav's mtime is the entry's last access: it survives restarts (atime is often
off on flash storage) and orders LRU eviction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from voicefleet.audio import WAV_HEADER_BYTES, wav_header
from voicefleet.files import write_atomic

log = logging.getLogger(__name__)


def cache_key(engine: str, model_version: str, lang: str, dialect: str | None, voice: str | None,
              text: str) -> str:
    """sha256 over everything that changes the audio; JSON so no field can bleed into the next."""
    parts = [engine, model_version, lang, dialect or "", voice or "", text]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


@dataclass
class _Entry:
    size: int  # bytes on disk, wav + meta
    used_at: float


class PhraseCache:
    def __init__(self, directory: str | os.PathLike, max_bytes: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._index: dict[str, _Entry] = {}
        self._hits = self._misses = self._evictions = 0
        self._rebuild()

    # -- public --------------------------------------------------------------------------

    def get(self, key: str) -> tuple[int, bytes] | None:
        """(sample_rate, pcm) of a cached phrase, or None; a hit counts as a use for LRU."""
        with self._lock:
            if key not in self._index:
                self._misses += 1
                return None
            try:
                data = self._wav(key).read_bytes()
                rate = struct.unpack_from("<I", data, 24)[0]
            except (OSError, struct.error):  # removed or damaged behind our back: a miss
                self._drop(key)
                self._misses += 1
                return None
            self._touch(key)
            self._hits += 1
            return rate, data[WAV_HEADER_BYTES:]

    def put(self, key: str, rate: int, pcm: bytes, meta: dict | None = None) -> bool:
        """Store a phrase; False when it alone is larger than the whole cache."""
        body = json.dumps({"key": key, "sample_rate": rate, "pcm_bytes": len(pcm), "created_at": time.time(),
                           **(meta or {})}, ensure_ascii=False).encode()
        size = WAV_HEADER_BYTES + len(pcm) + len(body)
        if size > self.max_bytes:
            return False
        with self._lock:
            write_atomic(self._wav(key), wav_header(rate, len(pcm)) + pcm)
            write_atomic(self._meta(key), body)  # last: its presence marks the entry complete
            self._index[key] = _Entry(size, time.time())
            self._evict()
        return True

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._index), "bytes": sum(e.size for e in self._index.values()),
                    "max_bytes": self.max_bytes, "hits": self._hits, "misses": self._misses,
                    "evictions": self._evictions}

    # -- internals -----------------------------------------------------------------------

    def _wav(self, key: str) -> Path:
        return self.directory / f"{key}.wav"

    def _meta(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def _rebuild(self) -> None:
        for tmp in self.directory.glob("*.tmp"):  # a write cut short by a crash
            tmp.unlink(missing_ok=True)
        for meta in self.directory.glob("*.json"):
            wav = meta.with_suffix(".wav")
            try:
                st = wav.stat()
                self._index[meta.stem] = _Entry(st.st_size + meta.stat().st_size, st.st_mtime)
            except FileNotFoundError:
                meta.unlink(missing_ok=True)
        for wav in self.directory.glob("*.wav"):  # wav without meta: torn put
            if wav.stem not in self._index:
                wav.unlink(missing_ok=True)
        self._evict()  # max_bytes may have shrunk since the last run

    def _touch(self, key: str) -> None:
        now = time.time()
        self._index[key].used_at = now
        try:
            os.utime(self._wav(key), (now, now))
        except OSError:
            pass

    def _drop(self, key: str) -> None:
        self._index.pop(key, None)
        self._meta(key).unlink(missing_ok=True)  # meta first: a crash between leaves a wav that start removes
        self._wav(key).unlink(missing_ok=True)

    def _evict(self) -> None:
        total = sum(e.size for e in self._index.values())
        for key in sorted(self._index, key=lambda k: self._index[k].used_at):
            if total <= self.max_bytes:
                break
            total -= self._index[key].size
            self._drop(key)
            self._evictions += 1
