"""CosyVoice3 (Fun-CosyVoice3-0.5B) on a GPU worker: zero-shot cloning, instructions, dialects.

Drives the upstream package's own API (FunAudioLLM/CosyVoice ``cosyvoice/cli/cosyvoice.py``:
``AutoModel(model_dir=..., fp16=...)`` builds a ``CosyVoice3``): ``inference_zero_shot(text,
prompt_text, prompt_wav, zero_shot_spk_id, stream=True)`` for a voice, and ``inference_instruct2(text,
instruct_text, prompt_wav, zero_shot_spk_id, stream=True)`` when the job carries an instruction or a
dialect, and ``inference_cross_lingual(text, prompt_wav, zero_shot_spk_id, stream=True)`` when the
clip's transcript is in another script than the job's language. Each yields ``{"tts_speech": tensor
[1, n]}`` pieces at the model's sample rate, which stream out as they come. CosyVoice3 expects its
system prompt in front of the prompt text ("You are a helpful assistant.<|endofprompt|>…"), and our
inline pinyin / ARPAbet / sound tags are its own syntax, so text goes through verbatim.

A cloned voice's prompt clip comes with the job (``SynthesisRequest.prompt``): fetched once from the
control plane, checked against its sha256 and cached; its speaker features (upstream's
``frontend_zero_shot`` output: embedding, speech tokens, features) are extracted once per clip sha256
and kept in upstream's ``frontend.spk2info`` for the last few clips. The preset voice ``default`` exists only where
``VOICEFLEET_COSYVOICE_DEFAULT_PROMPT`` (a WAV) and ``VOICEFLEET_COSYVOICE_DEFAULT_TEXT`` name one;
without them the engine advertises no preset and ``voice_required``, so placement sends it only jobs
that name a voice, and a job it cannot speak is refused as ``unsupported``, which hands it to the next
engine of the agent's chain. Japanese is not advertised: upstream reads it only after conversion to
kana, which nothing here does. The weights cannot be downloaded on machines without a network: the
engine refuses to start, saying what is missing.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

from edge_agent.engines.base import (
    Engine,
    EngineError,
    EngineUnavailable,
    SynthesisRequest,
    never_cancelled,
    refuse_unspeakable,
)
from edge_agent.engines.settings import EngineSettings
from voicefleet.protocol import LANGUAGES, UNSUPPORTED, Capabilities, EngineDescriptor, VoicePrompt
from voicefleet.text.dialects import COSYVOICE3, dialects_for_engine, lookup
from voicefleet.text.instructions import format_cosyvoice_prompt, parse_instruction
from voicefleet.text.scripts import SCRIPTS, script_of

SYSTEM = "You are a helpful assistant.<|endofprompt|>"
PROMPT_CACHE_MAX = 256  # prompt clips on disk
SPEAKER_CACHE_MAX = 16  # speaker features held by upstream's frontend (on the GPU), least recently used out
# Upstream reads Japanese only once converted to kana (its example.py); no converter here, so no "ja".
SPOKEN = [lang for lang in LANGUAGES if lang != "ja"]


def model_dir(settings: EngineSettings | None = None) -> Path:
    return (settings or EngineSettings()).cosyvoice_dir


def _load_model(directory: Path, fp16: bool):
    try:
        from cosyvoice.cli.cosyvoice import AutoModel
    except ImportError as exc:
        raise EngineUnavailable("CosyVoice3 needs the upstream `cosyvoice` package (FunAudioLLM/CosyVoice) on "
                                "PYTHONPATH with its requirements and a GPU") from exc
    if not (directory / "cosyvoice3.yaml").is_file():
        raise EngineUnavailable(f"CosyVoice3 weights not found in {directory} (no cosyvoice3.yaml): download "
                                "Fun-CosyVoice3-0.5B-2512 there (or set VOICEFLEET_COSYVOICE_DIR)")
    # upstream turns fp16 off itself (with a warning) where there is no CUDA
    return AutoModel(model_dir=str(directory), fp16=fp16)


class CosyVoice3Engine(Engine):
    def __init__(self, directory: Path | None = None, settings: EngineSettings | None = None):
        self.settings = settings or EngineSettings()
        directory = directory or self.settings.cosyvoice_dir
        if not directory.is_dir():
            raise EngineUnavailable(f"CosyVoice3 weights not found: {directory} does not exist (download "
                                    "Fun-CosyVoice3-0.5B-2512 there or set VOICEFLEET_COSYVOICE_DIR)")
        self._default = _default_prompt(self.settings)
        self.model = _load_model(directory, self.settings.cosyvoice_fp16)
        self.sample_rate = int(self.model.sample_rate)
        # Upstream's streaming starts with short hops (fast first audio) and grows them on the model
        # object itself (CosyVoice2Model.tts), never setting them back: every job after the first
        # would wait for a long hop before its first audio. Each job starts from the loaded value.
        self._first_hop = getattr(self.model.model, "token_hop_len", None)
        self._lock = threading.Lock()  # the caches; the model itself serves the agent's 2 slots
        self._prompts: dict[str, Path] = {}
        self._speakers: OrderedDict[str, None] = OrderedDict()  # clip sha256s in upstream's spk2info, LRU
        self._cache = self.settings.prompt_cache_dir()
        self.descriptor = EngineDescriptor(name="cosyvoice3", version="0.5B-2512", model=directory.name,
                                           sample_rate=self.sample_rate)
        self.capabilities = Capabilities(languages=SPOKEN, dialects=list(dialects_for_engine(COSYVOICE3)),
                                         voices=["default"] if self._default else [],
                                         voice_required=self._default is None,
                                         streaming=True, cloning=True, instructions=True)
        self.tier = "flagship"

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        refuse_unspeakable(request)
        if self._first_hop is not None:
            self.model.model.token_hop_len = self._first_hop
        wav, sha256, transcript = self._prompt(request)
        instruction = self._instruction(request)
        session = self._session(sha256, wav, instruction or SYSTEM + transcript)
        try:
            pieces = self._pieces(request, wav, transcript, instruction, session)
            try:
                while not cancelled():  # before asking for the next hop, which may be far off
                    piece = next(pieces, None)
                    if piece is None:
                        return
                    yield _pcm16(piece["tts_speech"])
            finally:
                pieces.close()  # cancel, hand-off or error: upstream's generator stops making audio now
        finally:
            self.model.frontend.spk2info.pop(session, None)
            _release_gpu_memory()

    def _pieces(self, request: SynthesisRequest, wav: Path, transcript: str, instruction: str | None,
                session: str) -> Iterator[dict]:
        """Upstream's streaming generator for the job's mode: instruct2 for an instruction or a dialect;
        cross-lingual when the clip is in another language than the job; else zero-shot with the clip's
        transcript."""
        if instruction:
            return self.model.inference_instruct2(request.text, instruction, str(wav), zero_shot_spk_id=session,
                                                  stream=True)
        if _other_language(request, transcript):  # upstream's example puts the system prompt in the text here
            return self.model.inference_cross_lingual(SYSTEM + request.text, str(wav), zero_shot_spk_id=session,
                                                      stream=True)
        return self.model.inference_zero_shot(request.text, SYSTEM + transcript, str(wav), zero_shot_spk_id=session,
                                              stream=True)

    @staticmethod
    def _instruction(request: SynthesisRequest) -> str | None:
        """The instruct prompt: the job's instruction, or the dialect's own sentence."""
        if request.instruction:
            return parse_instruction(request.instruction).cosyvoice_prompt()
        dialect = lookup(request.dialect) if request.dialect else None
        return format_cosyvoice_prompt(dialect.instruction) if dialect else None

    def _prompt(self, request: SynthesisRequest) -> tuple[Path, str, str]:
        """The clip, its sha256 and its transcript: the cloned voice's, else the preset ``default``.
        ``unsupported`` (the chain's next engine may speak it) for a preset this engine lacks."""
        if request.prompt is not None:
            return self._fetch(request.prompt), request.prompt.sha256, request.prompt.transcript
        if request.voice not in (None, "default"):
            raise EngineError(UNSUPPORTED, f"CosyVoice3 has no preset voice {request.voice!r}: it speaks cloned voices "
                              "and, where one is configured, the default")
        if self._default is None:
            raise EngineError(UNSUPPORTED, "CosyVoice3 here has no default voice (set "
                              "VOICEFLEET_COSYVOICE_DEFAULT_PROMPT and VOICEFLEET_COSYVOICE_DEFAULT_TEXT): "
                              "it speaks only cloned voices")
        return self._default

    def _session(self, sha256: str, wav: Path, prompt_text: str) -> str:
        """This job's entry in upstream's ``frontend.spk2info``: the clip's speaker features (embedding,
        speech tokens, speech features; extracted once per clip sha256) with this job's prompt text,
        which upstream takes from the entry whenever ``zero_shot_spk_id`` names one."""
        features = self._speaker(sha256, wav)
        text, text_len = self.model.frontend._extract_text_token(prompt_text)  # what frontend_zero_shot does
        session = f"{sha256}:{uuid.uuid4().hex}"
        self.model.frontend.spk2info[session] = {**features, "prompt_text": text, "prompt_text_len": text_len}
        return session

    def _speaker(self, sha256: str, wav: Path) -> dict:
        spk2info = self.model.frontend.spk2info
        with self._lock:  # extraction under the lock: a clip's features are computed once
            if sha256 in self._speakers and sha256 in spk2info:
                self._speakers.move_to_end(sha256)
                return spk2info[sha256]
            self.model.add_zero_shot_spk("", str(wav), sha256)  # upstream's own speaker registration
            self._speakers[sha256] = None
            while len(self._speakers) > SPEAKER_CACHE_MAX:
                spk2info.pop(self._speakers.popitem(last=False)[0], None)
            return spk2info[sha256]

    def _fetch(self, prompt: VoicePrompt) -> Path:
        with self._lock:
            cached = self._prompts.get(prompt.sha256)
        if cached is not None and cached.exists():
            return cached
        try:
            with urllib.request.urlopen(prompt.audio_url, timeout=10) as response:  # noqa: S310 (our own API)
                data = response.read(16 << 20)
        except OSError as exc:
            raise EngineError("prompt_unavailable", f"cannot fetch voice {prompt.voice_id}: {exc}",
                              retryable=True) from exc
        if hashlib.sha256(data).hexdigest() != prompt.sha256:
            raise EngineError("prompt_corrupt", f"voice {prompt.voice_id}'s clip does not match its sha256",
                              retryable=True)
        self._cache.mkdir(parents=True, exist_ok=True)
        path = self._cache / f"{prompt.sha256}.wav"
        path.write_bytes(data)
        with self._lock:
            if len(self._prompts) >= PROMPT_CACHE_MAX:
                self._prompts.pop(next(iter(self._prompts))).unlink(missing_ok=True)
            self._prompts[prompt.sha256] = path
        return path


def _other_language(request: SynthesisRequest, transcript: str) -> bool:
    """Does the job speak another language than its clip? The voice's recorded language says so where
    it has one; else the transcript's script, which cannot tell languages that share one apart
    (English and German, say: those stay zero-shot)."""
    clip_language = request.prompt.language if request.prompt is not None else None
    if clip_language:
        return clip_language != request.lang
    clip, job = script_of(transcript), SCRIPTS.get(request.lang)
    return bool(clip and job and clip != job)


def _default_prompt(settings: EngineSettings) -> tuple[Path, str, str] | None:
    """The preset ``default``'s clip, sha256 and transcript, or None where none is configured."""
    if not settings.cosyvoice_default_prompt:
        return None
    wav = Path(settings.cosyvoice_default_prompt)
    if not wav.is_file() or not settings.cosyvoice_default_text:
        raise EngineUnavailable(f"VOICEFLEET_COSYVOICE_DEFAULT_PROMPT={wav} needs a WAV file there and its transcript "
                                "in VOICEFLEET_COSYVOICE_DEFAULT_TEXT")
    return wav, hashlib.sha256(wav.read_bytes()).hexdigest(), settings.cosyvoice_default_text


def _pcm16(speech) -> bytes:
    import numpy as np

    samples = speech.detach().float().cpu().numpy().reshape(-1)
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _release_gpu_memory() -> None:
    """The design's rule: cached GPU memory goes back after each job (two jobs share one GPU).
    Upstream empties the cache at the end of a finished job only; a cancelled one ends here too."""
    try:
        import torch
    except ImportError:  # an agent without PyTorch has no GPU memory to give back
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
