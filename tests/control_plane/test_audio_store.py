"""control_plane.audio_store.LocalAudioStore on a real folder: chunk order, integrity, WAV output."""

from __future__ import annotations

import hashlib
import struct
import wave
from pathlib import Path

import pytest

from control_plane.audio_store import AudioIntegrityError, LocalAudioStore, StoredAudio
from voicefleet.audio import WAV_HEADER_BYTES

RATE = 22050


def pcm_chunk(n_samples: int, start: int = 0) -> bytes:
    """Distinct int16 samples, so a reordered or repeated chunk changes the bytes."""
    return struct.pack(f"<{n_samples}h", *(((start + i) * 37) % 65536 - 32768 for i in range(n_samples)))


def chunks(count: int = 4, samples: int = 300) -> list[bytes]:
    return [pcm_chunk(samples + k, start=k * 1000) for k in range(count)]  # uneven sizes on purpose


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=[0, 1 << 20], ids=["on-disk", "in-memory"])
def store(tmp_path: Path, request: pytest.FixtureRequest) -> LocalAudioStore:
    """Each test runs with audio spilled to the partial file at once, and kept in memory."""
    return LocalAudioStore(tmp_path / "audio", spill_bytes=request.param)


def received(store: LocalAudioStore, job_id: str, attempt: int = 1) -> bytes:
    return store.read_partial(job_id, attempt, 0)


def read_wav(path: Path) -> tuple[int, int, int, int, bytes]:
    with wave.open(str(path), "rb") as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes(), w.readframes(w.getnframes())


def leftovers(store: LocalAudioStore) -> list[str]:
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------ happy path


def test_in_order_chunks_make_a_valid_wav(store: LocalAudioStore) -> None:
    parts = chunks()
    for seq, pcm in enumerate(parts):
        assert store.append("abc123", 1, seq, pcm) is True
    pcm = b"".join(parts)
    stored = store.finalize("abc123", 1, sample_rate=RATE, chunks=len(parts), sha256=sha(pcm))

    assert stored == StoredAudio(key="jobs/ab/abc123.wav", samples=len(pcm) // 2, bytes=len(pcm), sha256=sha(pcm))
    path = store.root / stored.key
    channels, width, rate, frames, data = read_wav(path)
    assert (channels, width, rate, frames) == (1, 2, RATE, len(pcm) // 2)
    assert data == pcm
    assert path.stat().st_size == WAV_HEADER_BYTES + len(pcm)
    assert sha(path.read_bytes()[WAV_HEADER_BYTES:]) == stored.sha256
    # the partial is gone and nothing else is left behind
    assert not store.partial_path("abc123", 1).exists()
    assert leftovers(store) == ["jobs/ab/abc123.wav"]


def test_partial_grows_while_streaming(store: LocalAudioStore) -> None:
    parts = chunks(3)
    store.append("j1", 1, 0, parts[0])
    store.append("j1", 1, 1, parts[1])
    assert received(store, "j1", 1) == parts[0] + parts[1]


def test_zero_chunk_job_makes_an_empty_wav(store: LocalAudioStore) -> None:
    stored = store.finalize("silent", 1, sample_rate=16000, chunks=0, sha256=sha(b""))
    assert (stored.samples, stored.bytes) == (0, 0)
    assert read_wav(store.root / stored.key) == (1, 2, 16000, 0, b"")


def test_out_of_order_chunks_are_reordered(store: LocalAudioStore) -> None:
    parts = chunks(5)
    for seq in [3, 1, 4, 0, 2]:
        assert store.append("j2", 1, seq, parts[seq]) is True
    pcm = b"".join(parts)
    assert received(store, "j2", 1) == pcm
    stored = store.finalize("j2", 1, sample_rate=RATE, chunks=5, sha256=sha(pcm))
    assert read_wav(store.root / stored.key)[4] == pcm


def test_early_chunks_wait_until_the_gap_is_filled(store: LocalAudioStore) -> None:
    parts = chunks(3)
    store.append("j3", 1, 2, parts[2])
    store.append("j3", 1, 1, parts[1])
    assert received(store, "j3") == b""  # nothing can be stored before seq 0
    store.append("j3", 1, 0, parts[0])
    assert received(store, "j3", 1) == b"".join(parts)


@pytest.mark.parametrize("order", [[0, 0, 1, 2], [0, 1, 0, 2, 1], [2, 2, 0, 1, 2], [1, 0, 1, 2]])
def test_duplicate_chunks_are_ignored(store: LocalAudioStore, order: list[int]) -> None:
    parts = chunks(3)
    seen: set[int] = set()
    for seq in order:
        assert store.append("j4", 1, seq, parts[seq]) is (seq not in seen)
        seen.add(seq)
    pcm = b"".join(parts)
    stored = store.finalize("j4", 1, sample_rate=RATE, chunks=3, sha256=sha(pcm))
    assert read_wav(store.root / stored.key)[4] == pcm


def test_a_duplicate_with_different_bytes_does_not_overwrite(store: LocalAudioStore) -> None:
    parts = chunks(2)
    store.append("j5", 1, 1, parts[1])
    assert store.append("j5", 1, 1, b"\0\0" * 10) is False
    store.append("j5", 1, 0, parts[0])
    assert received(store, "j5", 1) == parts[0] + parts[1]


def test_attempts_are_kept_apart(store: LocalAudioStore) -> None:
    a, b = pcm_chunk(100, 0), pcm_chunk(120, 5000)
    store.append("j6", 1, 0, a)
    assert store.append("j6", 2, 0, b) is True  # same seq, other attempt: new
    store.discard("j6", 1)
    stored = store.finalize("j6", 2, sample_rate=RATE, chunks=1, sha256=sha(b))
    assert read_wav(store.root / stored.key)[4] == b


# ----------------------------------------------------------------------------- integrity


def test_missing_chunk_is_an_integrity_error_and_leaves_no_final_file(store: LocalAudioStore) -> None:
    parts = chunks(4)
    for seq in (0, 1, 3):  # seq 2 was lost
        store.append("j7", 1, seq, parts[seq])
    with pytest.raises(AudioIntegrityError, match="received 2 of 4 audio chunks"):
        store.finalize("j7", 1, sample_rate=RATE, chunks=4, sha256=sha(b"".join(parts)))
    assert not (store.root / store.final_key("j7")).exists()
    assert not list((store.root / "jobs").rglob("*.*"))


def test_missing_last_chunk_is_an_integrity_error(store: LocalAudioStore) -> None:
    parts = chunks(3)
    store.append("j8", 1, 0, parts[0])
    store.append("j8", 1, 1, parts[1])
    with pytest.raises(AudioIntegrityError, match="received 2 of 3"):
        store.finalize("j8", 1, sample_rate=RATE, chunks=3, sha256=sha(b"".join(parts)))
    assert not (store.root / store.final_key("j8")).exists()


def test_no_chunks_at_all_is_an_integrity_error(store: LocalAudioStore) -> None:
    with pytest.raises(AudioIntegrityError, match="received 0 of 2"):
        store.finalize("j9", 1, sample_rate=RATE, chunks=2, sha256=sha(b""))
    assert not (store.root / store.final_key("j9")).exists()


def test_more_chunks_than_announced_is_an_integrity_error(store: LocalAudioStore) -> None:
    parts = chunks(3)
    for seq, pcm in enumerate(parts):
        store.append("j10", 1, seq, pcm)
    with pytest.raises(AudioIntegrityError, match="received 3 of 2"):
        store.finalize("j10", 1, sample_rate=RATE, chunks=2, sha256=sha(parts[0] + parts[1]))


def test_wrong_sha256_is_an_integrity_error_and_leaves_no_final_file(store: LocalAudioStore) -> None:
    parts = chunks(3)
    for seq, pcm in enumerate(parts):
        store.append("j11", 1, seq, pcm)
    with pytest.raises(AudioIntegrityError, match="checksum differs"):
        store.finalize("j11", 1, sample_rate=RATE, chunks=3, sha256=sha(b"".join(reversed(parts))))
    assert not (store.root / store.final_key("j11")).exists()
    assert not (store.root / store.final_key("j11")).with_suffix(".tmp").exists()
    assert received(store, "j11") == b"".join(parts)  # kept until the dispatcher discards it
    store.discard("j11", 1)
    assert received(store, "j11") == b""
    assert leftovers(store) == []


def test_damaged_chunk_bytes_fail_the_checksum(store: LocalAudioStore) -> None:
    parts = chunks(2)
    store.append("j12", 1, 0, parts[0])
    store.append("j12", 1, 1, parts[1][:-2] + b"\x00\x01")
    with pytest.raises(AudioIntegrityError):
        store.finalize("j12", 1, sample_rate=RATE, chunks=2, sha256=sha(b"".join(parts)))
    assert not (store.root / store.final_key("j12")).exists()


def test_failed_finalize_keeps_an_earlier_good_file(store: LocalAudioStore) -> None:
    good = pcm_chunk(50)
    store.append("j13", 1, 0, good)
    first = store.finalize("j13", 1, sample_rate=RATE, chunks=1, sha256=sha(good))
    store.append("j13", 2, 0, pcm_chunk(60, 9))
    with pytest.raises(AudioIntegrityError):
        store.finalize("j13", 2, sample_rate=RATE, chunks=1, sha256=sha(b"bogus"))
    assert read_wav(store.root / first.key)[4] == good


# ------------------------------------------------------------------------------- discard


def test_discard_removes_the_partial_and_forgets_the_chunks(store: LocalAudioStore) -> None:
    parts = chunks(3)
    store.append("j14", 1, 0, parts[0])
    store.append("j14", 1, 2, parts[2])  # one early chunk held in memory
    assert received(store, "j14")
    store.discard("j14", 1)
    assert not store.partial_path("j14", 1).exists() and received(store, "j14") == b""
    assert leftovers(store) == []
    # the attempt starts from scratch afterwards: seq 0 is new again, the early chunk is gone
    assert store.append("j14", 1, 0, parts[1]) is True
    assert received(store, "j14", 1) == parts[1]
    with pytest.raises(AudioIntegrityError, match="received 1 of 3"):
        store.finalize("j14", 1, sample_rate=RATE, chunks=3, sha256=sha(b""))


def test_discard_of_unknown_attempt_is_harmless(store: LocalAudioStore) -> None:
    store.discard("never-seen", 7)
    assert leftovers(store) == []


def test_clear_partials_removes_every_partial(store: LocalAudioStore) -> None:
    store.append("a1", 1, 0, pcm_chunk(10))
    store.append("b2", 3, 0, pcm_chunk(10))
    store.clear_partials()
    assert leftovers(store) == []
    assert (store.root / "partial").is_dir()


# ------------------------------------------------------------------------------- reading


def test_iter_final_from_an_offset(store: LocalAudioStore) -> None:
    pcm = pcm_chunk(40_000)  # 80 000 bytes: more than one 64 KiB read
    store.append("j15", 1, 0, pcm)
    stored = store.finalize("j15", 1, sample_rate=RATE, chunks=1, sha256=sha(pcm))
    assert b"".join(store.iter_final(stored.key)) == pcm
    assert b"".join(store.iter_final(stored.key, offset=1000)) == pcm[1000:]
    assert b"".join(store.iter_final(stored.key, offset=len(pcm) - 2)) == pcm[-2:]
    assert b"".join(store.iter_final(stored.key, offset=len(pcm))) == b""
    blocks = list(store.iter_final(stored.key))
    assert len(blocks) == 2
    assert len(blocks[0]) == 1 << 16


def test_local_path_holds_the_whole_wav(store: LocalAudioStore) -> None:
    pcm = pcm_chunk(100)
    store.append("j16", 1, 0, pcm)
    stored = store.finalize("j16", 1, sample_rate=RATE, chunks=1, sha256=sha(pcm))
    data = store.local_path(stored.key).read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert data[WAV_HEADER_BYTES:] == pcm


def test_store_creates_its_folders(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "store"
    LocalAudioStore(root)
    assert (root / "partial").is_dir()
    assert (root / "jobs").is_dir()


@pytest.mark.parametrize("job_id", ["../../etc/passwd", "a/b", "..", "", ".hidden", "x" * 65])
def test_ids_that_could_leave_the_store_are_refused(tmp_path, job_id):
    store = LocalAudioStore(tmp_path)
    with pytest.raises(ValueError, match="storage-safe"):
        store.final_key(job_id)
    with pytest.raises(ValueError, match="storage-safe"):
        store.partial_path(job_id, 1)
