"""The voice library: prompt voices (an uploaded, checked clip plus its transcript, for zero-shot
cloning engines such as CosyVoice3) and preset voices (what the fleet's engines advertise).

A prompt voice belongs to the subject of the token that uploaded it: a client sees and uses only
its own (``owner=`` below; None for the roles that see everything), so another's voice is unknown
to it, never forbidden. Within one owner a voice is identified by its content hash (SHA-256 of the
normalised samples, see ``voicefleet.audio_checks``): the same clip uploaded twice is one voice.
The hash is also the audio's storage key (``voices/ab/abcd….wav`` under the audio dir, never a
user-supplied name) and the key of the speaker-embedding cache. Embeddings are resemblyzer's
256-d GE2E d-vectors, unit norm, so the cosine of two is their dot product.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from control_plane.models import Device, Voice
from voicefleet.audio_checks import EMBED_SR, CheckedClip, check_prompt
from voicefleet.errors import CodedError
from voicefleet.files import write_atomic
from voicefleet.protocol import LANGUAGES
from voicefleet.text.scripts import language_of

log = logging.getLogger(__name__)
EMBED_MODEL = "resemblyzer-ge2e-256"  # part of the cache key: another model means other vectors
EMBED_DIM = 256
REDIS_PREFIX = "voicefleet:"  # of every cache key (tests use one of their own)
MAX_TRANSCRIPT_CHARS = 1000
MIN_CONSENT_CHARS = 10
MAX_NAME_CHARS = 64
_MIN_TRIMMED_S = 0.5  # resemblyzer's VAD trim left less than this: embed the untrimmed clip


class VoiceError(CodedError):
    """A request the library refuses: ``code`` for programs, ``text`` for people."""


# ------------------------------------------------------------------------------- embeddings

_ENCODER: Any = None
_ENCODER_LOCK = threading.Lock()


def _encoder() -> Any:
    """resemblyzer's VoiceEncoder on CPU, loaded on first use (weights ship in its wheel)."""
    global _ENCODER
    if _ENCODER is None:
        with warnings.catch_warnings():  # its scipy/pkg_resources deprecations are not ours
            warnings.simplefilter("ignore")
            from resemblyzer import VoiceEncoder

            _ENCODER = VoiceEncoder("cpu", verbose=False)
    return _ENCODER


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """The encoder's LSTM is many tiny steps: extra OpenMP threads only wait on each other. torch's
    thread count is process-wide, so it is restored after (callers hold ``_ENCODER_LOCK``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def embed(wav16k: np.ndarray) -> np.ndarray:
    """Unit-norm 256-d speaker embedding of a 16 kHz mono float clip (long silences trimmed)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from resemblyzer import audio
    except ImportError as exc:
        raise VoiceError("embeddings_unavailable", "speaker embeddings need resemblyzer and PyTorch on the control "
                         "plane: pip install 'voicefleet[distill,eval]' and 'resemblyzer==0.1.4' --no-deps") from exc

    wav = np.asarray(wav16k, dtype=np.float32)
    trimmed = audio.preprocess_wav(wav)  # no source_sr: already 16 kHz, so librosa is not called
    if trimmed.size < _MIN_TRIMMED_S * EMBED_SR:
        trimmed = audio.normalize_volume(wav, audio.audio_norm_target_dBFS, increase_only=True)
    # One call at a time: the thread setting is process-wide, and one thread per call is the fast way.
    with _ENCODER_LOCK, _one_torch_thread():
        vector = _encoder().embed_utterance(trimmed.astype(np.float32))
    return np.asarray(vector, dtype=np.float32)


class EmbeddingCache:
    """Embeddings by content hash: Redis when a URL is given (shared by replicas, survives restarts),
    else an in-process LRU. ``hits`` and ``misses`` count lookups; a Redis error is a miss, logged."""

    def __init__(self, redis_url: str | None = None, *, prefix: str | None = None, lru_size: int = 4096,
                 ttl_s: int = 30 * 86400, embedder: Callable[[np.ndarray], np.ndarray] = embed):
        self.prefix, self.ttl_s, self.embedder = prefix or REDIS_PREFIX, ttl_s, embedder
        self.hits = self.misses = 0
        self._redis = _redis_client(redis_url) if redis_url else None
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lru_size = lru_size
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        return "redis" if self._redis is not None else "memory"

    def key(self, sha256: str) -> str:
        return f"{self.prefix}emb:{EMBED_MODEL}:{sha256}"

    def get(self, sha256: str, wav16k: np.ndarray) -> np.ndarray:
        """The embedding of the clip whose content hash is ``sha256``, computed only on a miss."""
        found = self._load(sha256)
        with self._lock:
            if found is not None:
                self.hits += 1
                return found
            self.misses += 1
        vector = self.embedder(wav16k)
        self._save(sha256, vector)
        return vector

    def _load(self, sha256: str) -> np.ndarray | None:
        if self._redis is None:
            with self._lock:
                vector = self._lru.get(sha256)
                if vector is not None:
                    self._lru.move_to_end(sha256)
                return vector
        try:
            raw = self._redis.get(self.key(sha256))
        except Exception as exc:  # redis.RedisError and socket errors: degrade to computing
            log.warning("embedding cache unreachable (%s); computing the embedding", exc)
            return None
        return np.frombuffer(raw, dtype="<f4").copy() if raw and len(raw) == 4 * EMBED_DIM else None

    def _save(self, sha256: str, vector: np.ndarray) -> None:
        if self._redis is None:
            with self._lock:
                self._lru[sha256] = vector
                while len(self._lru) > self._lru_size:
                    self._lru.popitem(last=False)
            return
        try:
            self._redis.set(self.key(sha256), vector.astype("<f4").tobytes(), ex=self.ttl_s)
        except Exception as exc:
            log.warning("embedding cache unreachable (%s); not cached", exc)


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


# ------------------------------------------------------------------------------ the library


@dataclass(frozen=True)
class Preset:
    name: str
    advertised_by: list[str]  # devices whose engines list it
    servable_by: list[str]  # of those, the ones that may take a job now


class VoiceService:
    """Adds, finds and compares voices; owns the voice audio folder and the embedding cache."""

    def __init__(self, audio_root: Path, cache: EmbeddingCache):
        self.root = Path(audio_root)
        self.cache = cache
        (self.root / "voices").mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Any) -> VoiceService:
        return cls(settings.resolved_audio_dir(), EmbeddingCache(settings.redis_url))

    def add(self, session: Session, *, data: bytes, filename: str | None, transcript: str | None,
            consent: str | None, name: str | None, owner: str | None,
            language: str | None = None) -> tuple[Voice, bool]:
        """(voice, created): the owner's existing voice, not created, when it already added this clip."""
        transcript, consent, name = _fields(transcript, consent, name)
        language = _language(language, transcript)
        clip = check_prompt(data, filename)
        existing = self.by_hash(session, clip.sha256, owner=owner)
        if existing is not None:
            return existing, False
        key = self._write_audio(clip)
        vector = self.cache.get(clip.sha256, clip.samples_16k)
        voice = Voice(name=name or f"voice-{clip.sha256[:8]}", kind="prompt", transcript=transcript, language=language,
                      consent=consent, owner=owner, content_sha256=clip.sha256, duration_s=clip.duration_s,
                      sample_rate=clip.sample_rate,
                      snr_db=clip.snr_db, embedding=[round(float(v), 6) for v in vector], audio_key=key)
        session.add(voice)
        try:
            session.commit()
        except IntegrityError:  # the same clip added meanwhile by another request
            session.rollback()
            return self.by_hash(session, clip.sha256, owner=owner), False
        session.refresh(voice)
        return voice, True

    def by_hash(self, session: Session, sha256: str, *, owner: str | None) -> Voice | None:
        return session.exec(select(Voice).where(Voice.content_sha256 == sha256, Voice.owner == owner)).first()

    def _write_audio(self, clip: CheckedClip) -> str:
        """Store the normalised WAV under its content hash (hex only: no path from the user)."""
        key = f"voices/{clip.sha256[:2]}/{clip.sha256}.wav"
        dest = self.root / key
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, clip.wav)  # readers never see half a file
        return key

    def audio_path(self, voice: Voice) -> Path:
        path = (self.root / (voice.audio_key or "")).resolve()
        if voice.audio_key is None or not path.is_relative_to((self.root / "voices").resolve()):
            raise VoiceError("no_audio", f"voice {voice.id} has no stored prompt audio")
        return path

    def similar(self, session: Session, voice: Voice, limit: int, *, owner: str | None) -> list[tuple[Voice, float]]:
        """Other prompt voices ``owner`` may see, by cosine of their embeddings, most similar first."""
        if not voice.embedding:
            raise VoiceError("no_embedding", f"voice {voice.id} has no speaker embedding to compare")
        others = [v for v in session.exec(_owned(select(Voice), owner).where(Voice.id != voice.id)).all()
                  if v.embedding]
        if not others:
            return []
        target = _unit(np.asarray(voice.embedding, dtype=np.float64))
        matrix = np.array([v.embedding for v in others], dtype=np.float64)
        scores = matrix @ target / (np.linalg.norm(matrix, axis=1) + 1e-12)
        order = np.argsort(-scores)[:limit]
        return [(others[i], round(float(scores[i]), 4)) for i in order]


def find(session: Session, voice_id: str, *, owner: str | None) -> Voice | None:
    """The stored voice ``voice_id`` if ``owner`` may see and use it (None: operators, admins and
    viewers, who see every voice); another owner's voice is None, as if it did not exist."""
    voice = session.get(Voice, voice_id)
    return voice if voice is not None and (owner is None or voice.owner == owner) else None


def stored(session: Session, *, owner: str | None) -> list[Voice]:
    """The stored voices ``owner`` may see (None: all), newest first."""
    return list(session.exec(_owned(select(Voice), owner).order_by(Voice.created_at.desc())).all())  # type: ignore[attr-defined]


def _owned(query: Any, owner: str | None) -> Any:
    return query if owner is None else query.where(Voice.owner == owner)


def presets(devices: list[Device], eligible: Callable[[str], bool]) -> list[Preset]:
    """Voices the fleet's engines advertise, with the devices that advertise each and those that may
    take a job now (``eligible``: the scheduler's gate)."""
    by_name: dict[str, list[str]] = {}
    for dev in devices:
        for name in (dev.capabilities or {}).get("voices") or []:
            by_name.setdefault(str(name), []).append(dev.id)
    return [Preset(name=name, advertised_by=sorted(ids), servable_by=sorted(i for i in ids if eligible(i)))
            for name, ids in sorted(by_name.items())]


def cloning_devices(devices: list[Device], eligible: Callable[[str], bool]) -> list[str]:
    """Devices that can speak with a prompt voice now: a cloning engine and open to new jobs."""
    return sorted(d.id for d in devices if (d.capabilities or {}).get("cloning") and eligible(d.id))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-12)


def _language(language: str | None, transcript: str) -> str | None:
    """The clip's language: the uploader's, checked, else what the transcript's script says alone."""
    language = (language or "").strip().lower() or None
    if language is None:
        return language_of(transcript)
    if language not in LANGUAGES:
        raise VoiceError("invalid_language", f"language {language!r} is not one of ours: give one of "
                         f"{', '.join(LANGUAGES)} (GET /v1/languages), or leave it out")
    return language


def _fields(transcript: str | None, consent: str | None, name: str | None) -> tuple[str, str, str | None]:
    """The form fields, stripped, or a VoiceError saying what to give."""
    transcript, consent = (transcript or "").strip(), (consent or "").strip()
    name = (name or "").strip() or None
    if not transcript:
        raise VoiceError("missing_transcript", "give `transcript`: the exact words spoken in the clip (zero-shot "
                         "cloning engines such as CosyVoice3 align the prompt audio with it)")
    if len(transcript) > MAX_TRANSCRIPT_CHARS:
        raise VoiceError("invalid_transcript", f"transcript has {len(transcript)} characters; a 3-30 s prompt "
                         f"needs fewer than {MAX_TRANSCRIPT_CHARS}: give only the words in the clip")
    if len(consent) < MIN_CONSENT_CHARS:
        raise VoiceError("missing_consent", "give `consent`: who is speaking in the clip and how they agreed to its "
                         "use as a synthetic voice (at least a sentence, e.g. 'Ana Li, recorded 2026-01-05, signed "
                         "release #42')")
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise VoiceError("invalid_name", f"name has {len(name)} characters; use at most {MAX_NAME_CHARS}")
    return transcript, consent, name
