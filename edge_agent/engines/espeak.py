"""eSpeak NG 1.52, driven in-process through ctypes.

The library and its data come from the ``espeakng-loader`` wheel, never from the system:
Debian's 1.51 ``cmn`` voice reads Chinese characters as spelled-out English. libespeak-ng keeps
its state in globals (current voice, one synth callback, one sample sink), so the process loads
it once and every call into it holds ``_LOCK``. Each sentence is synthesised whole (synchronous
mode, a few milliseconds) and its PCM is yielded after the lock is released, so a slow consumer
never holds up other jobs.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from array import array
from collections.abc import Callable, Iterator

from edge_agent.engines.base import (
    Engine,
    EngineError,
    EngineUnavailable,
    SynthesisRequest,
    never_cancelled,
    refuse_unspeakable,
)
from voicefleet.protocol import Capabilities, EngineDescriptor
from voicefleet.text.sentences import split_sentences

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # without it a bad data path calls exit(1) inside the agent
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # a sentence-final pause, so consecutive sentences do not run together
_EE_OK = 0
_BUFLEN_MS = 200
_FALLBACK_VERSION = "1.52"

# (lang, dialect) -> eSpeak voice. Hakka is left out: 1.52's ``hak`` voice only reads
# romanised Hakka and spells each Chinese character as "Chinese letter" in English.
_VOICES: dict[tuple[str, str | None], str] = {
    ("zh", None): "cmn",
    ("zh", "yue"): "yue",
    ("en", None): "en-us",
}
# Our voice names -> eSpeak variant suffix (the bare eSpeak voices are male).
_VARIANTS: dict[str, str] = {"default": "", "male": "", "female": "+f3"}

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.c_void_p)


class _Library:
    """The loaded libespeak-ng. Callers hold ``_LOCK`` around every method."""

    def __init__(self, lib: ctypes.CDLL, sample_rate: int, version: str):
        self.lib = lib
        self.sample_rate = sample_rate
        self.version = version
        self._sink = bytearray()
        self._voice: str | None = None
        # Keep a reference: C holds only the function pointer.
        self._callback = _SynthCallback(self._on_samples)
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def load(cls) -> _Library:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise EngineUnavailable("eSpeak NG needs the espeakng-loader package: "
                                    "pip install 'voicefleet[edge]'") from exc
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as exc:
            raise EngineUnavailable(f"cannot load libespeak-ng from espeakng-loader: {exc}") from exc
        _declare(lib)
        data_path = espeakng_loader.get_data_path()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFLEN_MS, data_path.encode(),
                                     _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EngineUnavailable(f"libespeak-ng failed to initialise with data at {data_path}")
        version = lib.espeak_Info(None)
        return cls(lib, rate, version.decode() if version else _FALLBACK_VERSION)

    def _on_samples(self, wav: object, count: int, _events: object) -> int:
        if wav and count > 0:
            self._sink.extend(ctypes.string_at(wav, count * 2))
        return 0  # 0 = go on

    def set_voice(self, voice: str) -> bool:
        if voice != self._voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                self._voice = None
                return False
            self._voice = voice
        return True

    def synthesize(self, voice: str, text: str) -> bytes:
        """Native-order int16 samples of ``text`` spoken by ``voice``."""
        self._use(voice)
        self._sink = bytearray()
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0,
                                       _CHARS_UTF8 | _ENDPAUSE, None, None)
        if status != _EE_OK:
            raise EngineError("synthesis_failed", f"espeak_Synth returned {status}", retryable=True)
        pcm, self._sink = bytes(self._sink), bytearray()
        return pcm

    def phonemes(self, voice: str, text: str) -> str:
        """eSpeak's ASCII phonemes (Mandarin tones as 55/35/214/51), clauses joined by spaces."""
        self._use(voice)
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        cursor = ctypes.c_void_p(ctypes.addressof(buffer))
        clauses = []
        while cursor.value:  # the library advances the cursor one clause per call, NULL at the end
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(cursor), _CHARS_UTF8, 0)
            clauses.append(out.decode("utf-8", "replace") if out else "")
        return " ".join(clause for clause in clauses if clause)

    def _use(self, voice: str) -> None:
        if not self.set_voice(voice):
            raise EngineUnavailable(f"eSpeak NG voice {voice!r} is missing from espeak-ng-data")


def _declare(lib: ctypes.CDLL) -> None:
    c = ctypes
    lib.espeak_Initialize.argtypes = [c.c_int, c.c_int, c.c_char_p, c.c_int]
    lib.espeak_Initialize.restype = c.c_int
    lib.espeak_Info.argtypes = [c.c_void_p]
    lib.espeak_Info.restype = c.c_char_p
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [c.c_char_p]
    lib.espeak_SetVoiceByName.restype = c.c_int
    lib.espeak_Synth.argtypes = [c.c_char_p, c.c_size_t, c.c_uint, c.c_int, c.c_uint, c.c_uint,
                                 c.c_void_p, c.c_void_p]
    lib.espeak_Synth.restype = c.c_int
    lib.espeak_TextToPhonemes.argtypes = [c.POINTER(c.c_void_p), c.c_int, c.c_int]
    lib.espeak_TextToPhonemes.restype = c.c_char_p


# The one process-wide handle, loaded on first use; _LOCK guards loading and every call into it.
_LOCK = threading.Lock()
_handle: _Library | None = None


def _library() -> _Library:
    global _handle
    with _LOCK:
        if _handle is None:
            _handle = _Library.load()
        return _handle


def _little_endian(pcm: bytes) -> bytes:
    if sys.byteorder == "little":
        return pcm
    samples = array("h", pcm)
    samples.byteswap()
    return samples.tobytes()


def espeak_text(text: str) -> str:
    """Our inline markup as eSpeak reads it: an annotated syllable as toned pinyin ("hao4", which
    the ``cmn`` voice reads as pinyin), sound tags, emphasis and ARPAbet words (no eSpeak form) dropped.
    Text whose markup does not parse goes through as written."""
    from voicefleet.text.annotations import AnnotationError, Pinyin, Text, parse

    try:
        segments = parse(text)
    except AnnotationError:
        return text
    out = []
    for segment in segments:
        if isinstance(segment, Text):
            out.append(segment.text)
        elif isinstance(segment, Pinyin):
            out.append(f" {segment.syllable} ")
    return "".join(out)


class EspeakEngine(Engine):
    """Mandarin (``cmn``), Cantonese (``yue``) and US English from eSpeak NG, streamed by sentence.

    Raises EngineUnavailable when libespeak-ng cannot be loaded. ``instruction`` is ignored
    (capabilities say instructions are unsupported, so the scheduler sends none).
    """

    def __init__(self, *, max_sentence_chars: int = 100, chunk_seconds: float = 0.5):
        self._lib = _library()
        self._max_sentence_chars = max_sentence_chars
        self._chunk_bytes = max(1, int(self._lib.sample_rate * chunk_seconds)) * 2
        with _LOCK:
            working = {key: voice for key, voice in _VOICES.items() if self._lib.set_voice(voice)}
        if not working:
            raise EngineUnavailable("espeak-ng-data has none of the voices cmn, yue, en-us")
        self._voices = working
        self.descriptor = EngineDescriptor(name="espeak-ng", version=self._lib.version,
                                           model="espeak-ng-data", sample_rate=self._lib.sample_rate)
        self.tier = "formant"  # rule-based formant synthesis: understood in English, barely in Chinese
        self.capabilities = Capabilities(
            languages=list(dict.fromkeys(lang for lang, _ in working)),
            dialects=[dialect for _, dialect in working if dialect],
            voices=list(_VARIANTS), streaming=True, cloning=False, instructions=False)

    def resolve_voice(self, request: SynthesisRequest) -> str:
        """The eSpeak voice name for ``request``; EngineError("unsupported") if there is none."""
        base = self._voices.get((request.lang, request.dialect or None))
        if base is None:
            raise EngineError("unsupported", self._unsupported_text(request))
        voice = request.voice or "default"
        if voice not in _VARIANTS:
            raise EngineError("unsupported", f"eSpeak NG has no voice {voice!r}; "
                                             f"choose one of: {', '.join(_VARIANTS)}")
        return base + _VARIANTS[voice]

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        """Yield int16 LE mono PCM, sentence by sentence, in chunks of at most ``chunk_seconds``."""
        refuse_unspeakable(request)
        voice = self.resolve_voice(request)
        sentences = split_sentences(espeak_text(request.text).replace("\0", " "), self._max_sentence_chars)
        for sentence in sentences:
            if cancelled():
                return
            with _LOCK:
                pcm = self._lib.synthesize(voice, sentence)
            pcm = _little_endian(pcm)
            for start in range(0, len(pcm), self._chunk_bytes):
                if start and cancelled():
                    return
                yield pcm[start:start + self._chunk_bytes]

    def phonemes(self, request: SynthesisRequest) -> str:
        """What eSpeak will say, as ASCII phonemes: a check that the right voice reads the text."""
        voice = self.resolve_voice(request)
        with _LOCK:
            return self._lib.phonemes(voice, request.text)

    def _unsupported_text(self, request: SynthesisRequest) -> str:
        supported = ", ".join(f"{lang}+{dialect}" if dialect else lang for lang, dialect in self._voices)
        asked = f"{request.lang}+{request.dialect}" if request.dialect else request.lang
        note = " (its Hakka voice reads only romanised Hakka)" if request.dialect == "hak" else ""
        return f"eSpeak NG cannot speak {asked}{note}; it speaks: {supported}"
