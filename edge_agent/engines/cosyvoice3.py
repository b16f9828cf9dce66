"""CosyVoice3 (Fun-CosyVoice3-0.5B) on a GPU worker: zero-shot cloning, instructions, dialects.

Drives the upstream package's own API (``cosyvoice.cli.cosyvoice.AutoModel``):
``inference_zero_shot(text, prompt_text, prompt_wav, stream=True)`` for a voice, and
``inference_instruct2(text, instruct_text, prompt_wav, stream=True)`` when the job carries an
instruction or a dialect. Each yields ``{"tts_speech": tensor [1, n]}`` pieces at the model's
sample rate, which stream out as they come. CosyVoice3 expects its system prompt in front of the
prompt text ("You are a helpful assistant.<|endofprompt|>…"), and our inline pinyin / ARPAbet /
sound tags are its own syntax, so text goes through verbatim.

A cloned voice's prompt clip comes with the job (``SynthesisRequest.prompt``): fetched once from
the control plane, checked against its sha256 and cached. The preset voice ``default`` uses the
clip and transcript named by ``VOICEFLEET_COSYVOICE_DEFAULT_PROMPT`` (a WAV) and
``VOICEFLEET_COSYVOICE_DEFAULT_TEXT``. The weights cannot be downloaded on machines without a
network: the engine refuses to start, saying what is missing, and its tests run where they exist.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.request
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
from voicefleet.protocol import LANGUAGES, Capabilities, EngineDescriptor, VoicePrompt
from voicefleet.text.dialects import COSYVOICE3, dialects_for_engine, lookup
from voicefleet.text.instructions import format_cosyvoice_prompt, parse_instruction

SYSTEM = "You are a helpful assistant.<|endofprompt|>"
PROMPT_CACHE_MAX = 256


def model_dir(settings: EngineSettings | None = None) -> Path:
    return (settings or EngineSettings()).cosyvoice_dir


def _load_model(directory: Path):
    try:
        from cosyvoice.cli.cosyvoice import AutoModel
    except ImportError as exc:
        raise EngineUnavailable("CosyVoice3 needs the upstream `cosyvoice` package (FunAudioLLM/CosyVoice) on "
                                "PYTHONPATH with its requirements and a GPU") from exc
    if not (directory / "cosyvoice3.yaml").is_file() and not any(directory.glob("*.yaml")):
        raise EngineUnavailable(f"CosyVoice3 weights not found in {directory}: download Fun-CosyVoice3-0.5B-2512 "
                                "there (or set VOICEFLEET_COSYVOICE_DIR)")
    return AutoModel(model_dir=str(directory))


class CosyVoice3Engine(Engine):
    def __init__(self, directory: Path | None = None, settings: EngineSettings | None = None):
        self.settings = settings or EngineSettings()
        directory = directory or self.settings.cosyvoice_dir
        if not directory.is_dir():
            raise EngineUnavailable(f"CosyVoice3 weights not found: {directory} does not exist (download "
                                    "Fun-CosyVoice3-0.5B-2512 there or set VOICEFLEET_COSYVOICE_DIR)")
        self.model = _load_model(directory)
        self.sample_rate = int(self.model.sample_rate)
        self._lock = threading.Lock()  # prompt cache only; the model itself serves the agent's 2 slots
        self._prompts: dict[str, Path] = {}
        self._cache = self.settings.prompt_cache_dir()
        self.descriptor = EngineDescriptor(name="cosyvoice3", version="0.5B-2512", model=directory.name,
                                           sample_rate=self.sample_rate)
        self.capabilities = Capabilities(languages=list(LANGUAGES), dialects=list(dialects_for_engine(COSYVOICE3)),
                                         voices=["default"], streaming=True, cloning=True, instructions=True)
        self.tier = "flagship"

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        refuse_unspeakable(request)
        prompt_wav, prompt_text = self._prompt(request.prompt)
        instruction = self._instruction(request)
        if instruction:
            pieces = self.model.inference_instruct2(request.text, instruction, str(prompt_wav), stream=True)
        else:
            pieces = self.model.inference_zero_shot(request.text, SYSTEM + prompt_text, str(prompt_wav), stream=True)
        try:
            for piece in pieces:
                if cancelled():
                    return
                yield _pcm16(piece["tts_speech"])
        finally:
            _release_gpu_memory()

    @staticmethod
    def _instruction(request: SynthesisRequest) -> str | None:
        """The instruct prompt: the job's instruction, or the dialect's own sentence."""
        if request.instruction:
            return parse_instruction(request.instruction).cosyvoice_prompt()
        dialect = lookup(request.dialect) if request.dialect else None
        return format_cosyvoice_prompt(dialect.instruction) if dialect else None

    def _prompt(self, prompt: VoicePrompt | None) -> tuple[Path, str]:
        if prompt is None:
            wav = self.settings.cosyvoice_default_prompt
            if not wav:
                # this device's configuration, not the request's: it counts against the device
                raise EngineError("engine_unavailable", "the default CosyVoice3 voice needs "
                                  "VOICEFLEET_COSYVOICE_DEFAULT_PROMPT (a WAV) and VOICEFLEET_COSYVOICE_DEFAULT_TEXT",
                                  retryable=True)
            return Path(wav), self.settings.cosyvoice_default_text
        return self._fetch(prompt), prompt.transcript

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


def _pcm16(speech) -> bytes:
    import numpy as np

    samples = speech.detach().float().cpu().numpy().reshape(-1)
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _release_gpu_memory() -> None:
    """The design's rule: GPU memory goes back after each job (two jobs share one GPU)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
