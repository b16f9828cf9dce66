"""A Wyoming protocol TTS server, so Home Assistant can use an agent's engine with no plug-in.

Wyoming (``pip install wyoming==1.10.2``; the streaming-text events need >= 1.7.0) is newline-delimited
JSON events with binary payloads. This serves ``describe`` (→ ``info``), one-shot ``synthesize`` and the
streaming-text session ``synthesize-start`` / ``synthesize-chunk`` / ``synthesize-stop`` (→ ``synthesize-stopped``).

Engines are blocking generators, so each chunk is pulled on a worker thread: the event loop
keeps serving other connections and every chunk goes out as soon as the engine yields it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from edge_agent.engines.base import Engine, EngineError, SynthesisRequest, refuse_unspeakable
from voicefleet.text.sentences import _SENTENCE_END, DEFAULT_MAX_CHARS, split_sentences
from voicefleet.text.speakable import speakable

log = logging.getLogger(__name__)

PROGRAM = "voicefleet"
ATTRIBUTION = Attribution(name="voicefleet", url="https://github.com/voicefleet/voicefleet")
SAMPLE_WIDTH = 2  # engines yield int16 mono
CHANNELS = 1
_CLOSERS = "”’\"'）)】」』》"
# Region subtags that mean Cantonese when Home Assistant sends a zh-* locale.
_CANTONESE_REGIONS = {"hk", "mo"}


def _version() -> str:
    try:
        return importlib.metadata.version("voicefleet")
    except importlib.metadata.PackageNotFoundError:
        return "0"


@dataclass(frozen=True)
class VoiceChoice:
    """One advertised Wyoming voice: a language tag (zh, en, yue...) and an engine voice."""

    tag: str
    voice: str

    @property
    def name(self) -> str:
        return f"{self.tag}-{self.voice}"


def request_fields(tag: str, dialects: list[str]) -> tuple[str, str | None]:
    """A language tag (``yue``, ``zh-CN``, ``en_US``) → SynthesisRequest (lang, dialect).

    Chinese dialects are their own tags in Wyoming but a dialect of ``zh`` in our requests.
    """
    primary, _, region = tag.replace("_", "-").lower().partition("-")
    if primary == "cmn":
        primary = "zh"
    if primary == "zh" and region in _CANTONESE_REGIONS and "yue" in dialects:
        return "zh", "yue"
    if primary == "zh" and region in dialects:  # BCP 47's extended-language form: zh-yue is yue
        return "zh", region
    if primary in dialects:
        return "zh", primary
    return primary, None


def voice_choices(engine: Engine) -> list[VoiceChoice]:
    caps = engine.capabilities
    tags = list(caps.languages) + [d for d in caps.dialects if d not in caps.languages]
    choices = []
    for tag in tags:
        lang, dialect = request_fields(tag, caps.dialects)
        for voice in caps.voices:
            try:  # advertise only combinations some engine here actually speaks
                engine.select(SynthesisRequest(text="", lang=lang, dialect=dialect, voice=_engine_voice(voice)))
            except EngineError:
                continue
            choices.append(VoiceChoice(tag, voice))
    return choices


def _engine_voice(voice: str | None) -> str | None:
    return None if voice in (None, "default") else voice


def build_info(engine: Engine, choices: list[VoiceChoice]) -> Info:
    voices = []
    for choice in choices:
        lang, dialect = request_fields(choice.tag, engine.capabilities.dialects)
        member = engine.select(SynthesisRequest(text="", lang=lang, dialect=dialect,
                                                     voice=_engine_voice(choice.voice)))
        desc = member.descriptor
        voices.append(TtsVoice(name=choice.name, description=f"{choice.tag} {choice.voice} ({desc.name}, {desc.model})",
                               attribution=ATTRIBUTION, installed=True, version=desc.version,
                               languages=[choice.tag]))
    program = TtsProgram(name=PROGRAM, description="voicefleet edge TTS", attribution=ATTRIBUTION, installed=True,
                         version=_version(), voices=voices, supports_synthesize_streaming=True)
    return Info(tts=[program])


def complete_prefix(text: str) -> int:
    """Where the last finished sentence of a growing text ends (0: none yet).

    A trailing "." may still turn into "3.5" or "e.g." with the next chunk, so it only counts
    once something follows it; 。！？ and the like end a sentence at once so speech starts early.
    """
    cut = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() == len(text) and match.group().rstrip(_CLOSERS).endswith("."):
            break
        cut = match.end()
    return cut


class SentenceBuffer:
    """Text chunks in, whole sentences out (split_sentences' pieces), holding back the unfinished tail."""

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS):
        self.max_chars = max_chars
        self.text = ""

    def feed(self, chunk: str) -> list[str]:
        self.text += chunk
        cut = complete_prefix(self.text)
        ready, self.text = split_sentences(self.text[:cut], self.max_chars), self.text[cut:]
        if len(self.text) > self.max_chars:  # an over-long sentence: speak its clauses that are done
            pieces = split_sentences(self.text, self.max_chars)
            if len(pieces) > 1:
                ready += pieces[:-1]
                self.text = self.text[self.text.rfind(pieces[-1]):]
        return ready

    def flush(self) -> list[str]:
        ready, self.text = split_sentences(self.text, self.max_chars), ""
        return ready


@dataclass
class StreamSession:
    request: SynthesisRequest  # text is filled in per sentence
    rate: int | None = None  # None until audio-start went out
    failed: bool = False
    buffer: SentenceBuffer | None = None


class TtsEventHandler(AsyncEventHandler):
    """One client connection; events are handled in order, sentence audio is streamed as made."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, engine: Engine,
                 info: Info, choices: dict[str, VoiceChoice]):
        super().__init__(reader, writer)
        self.engine, self.info, self.choices = engine, info, choices
        self.session: StreamSession | None = None
        self._cancelled = threading.Event()  # set when the client is gone: the engine stops early

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(self.info.event())
        elif SynthesizeStart.is_type(event.type):
            await self._start(SynthesizeStart.from_event(event).voice)
        elif SynthesizeChunk.is_type(event.type):
            await self._chunk(SynthesizeChunk.from_event(event).text)
        elif SynthesizeStop.is_type(event.type):
            await self._stop()
        elif Synthesize.is_type(event.type):
            if self.session is None:  # inside a stream it is the compatibility copy of the chunks: ignore
                await self._one_shot(Synthesize.from_event(event))
        else:
            log.debug("ignoring wyoming event %s", event.type)
        return True

    async def disconnect(self) -> None:
        self._cancelled.set()

    def _request(self, voice: SynthesizeVoice | None, text: str = "") -> SynthesisRequest:
        caps = self.engine.capabilities
        if voice is not None and voice.name:
            choice = self.choices.get(voice.name)
            if choice is None:
                raise EngineError("unsupported", f"no voice {voice.name!r}; choose one of: {', '.join(self.choices)}")
            lang, dialect = request_fields(choice.tag, caps.dialects)
            return SynthesisRequest(text=text, lang=lang, dialect=dialect, voice=_engine_voice(choice.voice))
        tag = voice.language if voice is not None and voice.language else caps.languages[0]
        lang, dialect = request_fields(tag, caps.dialects)
        return SynthesisRequest(text=text, lang=lang, dialect=dialect)

    async def _one_shot(self, synth: Synthesize) -> None:
        try:
            request = self._request(synth.voice, synth.text)
            refuse_unspeakable(request)  # the code and words every path gives (voicefleet/text/speakable.py)
            rate = self.engine.select(request).descriptor.sample_rate
            start = AudioStart(rate=rate, width=SAMPLE_WIDTH, channels=CHANNELS).event()
            await self._speak(request, rate, partial(self.write_event, start))
            await self.write_event(AudioStop().event())
        except EngineError as exc:  # the connection lives on for the next request
            await self._error(exc)

    async def _start(self, voice: SynthesizeVoice | None) -> None:
        if self.session is not None:
            log.warning("synthesize-start inside a stream: starting over")
        try:
            request = self._request(voice)
            self.engine.select(request)  # fail now, not on the first sentence
            self.session = StreamSession(request=request, buffer=SentenceBuffer())
        except EngineError as exc:
            self.session = StreamSession(request=SynthesisRequest(text=""), failed=True)
            await self._error(exc)

    async def _chunk(self, text: str) -> None:
        session = self.session
        if session is None or session.failed or session.buffer is None:
            return
        for sentence in session.buffer.feed(text):
            await self._speak_sentence(session, sentence)

    async def _stop(self) -> None:
        session, self.session = self.session, None
        if session is not None and not session.failed and session.buffer is not None:
            for sentence in session.buffer.flush():
                await self._speak_sentence(session, sentence)
            if session.rate is None:  # nothing was spoken; the client still expects one audio stream
                await self._audio_start(session)
            await self.write_event(AudioStop().event())
        await self.write_event(SynthesizeStopped().event())

    async def _audio_start(self, session: StreamSession) -> int:
        if session.rate is None:
            session.rate = self.engine.select(session.request).descriptor.sample_rate
            await self.write_event(AudioStart(rate=session.rate, width=SAMPLE_WIDTH, channels=CHANNELS).event())
        return session.rate

    async def _speak_sentence(self, session: StreamSession, sentence: str) -> None:
        if not speakable(sentence):  # a stray "……" has nothing to say
            return
        request = session.request.model_copy(update={"text": sentence})
        try:
            rate = self.engine.select(request).descriptor.sample_rate
            await self._speak(request, rate, partial(self._audio_start, session))
        except EngineError as exc:  # one unspeakable sentence does not end the stream
            await self._error(exc)

    async def _speak(self, request: SynthesisRequest, rate: int,
                     before_audio: Callable[[], Awaitable[object]]) -> None:
        """Stream one request's PCM; ``before_audio`` (audio-start) runs once the first chunk exists,
        so input the engine rejects yields an error event alone, not a started and unfinished stream."""
        chunks: Iterator[bytes] = self.engine.synthesize(request, self._cancelled.is_set)
        started = False
        try:
            while (pcm := await asyncio.to_thread(next, chunks, None)) is not None:
                if pcm:
                    if not started:
                        await before_audio()
                        started = True
                    await self.write_event(AudioChunk(rate=rate, width=SAMPLE_WIDTH, channels=CHANNELS,
                                                      audio=pcm).event())
        except EngineError:
            raise  # the input's fault: the connection and its next requests carry on
        except BaseException:
            self._cancelled.set()  # client gone or task cancelled: let the engine stop between chunks
            raise
        else:
            if not started:  # an engine that yielded nothing still owes the client a (silent) stream
                await before_audio()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                await asyncio.to_thread(close)

    async def _error(self, exc: EngineError) -> None:
        log.info("wyoming synthesis failed: %s (%s)", exc.text, exc.code)
        await self.write_event(Error(text=exc.text, code=exc.code).event())


class WyomingTtsServer:
    """Serve ``engine`` over Wyoming at ``uri`` (``tcp://host:port`` or ``unix:///path``)."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 10200, uri: str | None = None):
        self.engine = engine
        self.uri = uri or f"tcp://{host}:{port}"
        choices = voice_choices(engine)
        self.choices = {c.name: c for c in choices}
        self.info = build_info(engine, choices)
        self.address: tuple[str, int] | str | None = None  # the bound address once started (port 0 → real port)
        self._server: AsyncServer | None = None
        self._stop: asyncio.Event | None = None

    def _handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> TtsEventHandler:
        return TtsEventHandler(reader, writer, engine=self.engine, info=self.info, choices=self.choices)

    async def run(self, started: Callable[[], None] | None = None) -> None:
        """Serve until ``stop()`` (or cancellation); ``started`` is called once the socket listens."""
        self._stop = asyncio.Event()
        self._server = AsyncServer.from_uri(self.uri)
        await self._server.start(self._handler)
        self.address = _bound_address(self._server)
        log.info("wyoming tts server on %s", self.address)
        if started is not None:
            started()
        try:
            await self._stop.wait()
        finally:
            await self._server.stop()

    def stop(self) -> None:
        """Ask a running ``run()`` to return; call from its own event loop."""
        if self._stop is not None:
            self._stop.set()

    def serve_in_thread(self, timeout: float = 10.0) -> Callable[[], None]:
        """Run the server on its own thread and event loop (beside the agent's MQTT loop); returns stop()."""
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        failure: list[BaseException] = []

        def main() -> None:
            try:
                loop.run_until_complete(self.run(started=ready.set))
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        thread = threading.Thread(target=main, name="wyoming-tts", daemon=True)
        thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"wyoming server on {self.uri} did not start in {timeout} s")
        if failure:
            raise failure[0]

        def stop() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.stop)
            thread.join(timeout)

        return stop


def _bound_address(server: AsyncServer) -> tuple[str, int] | str | None:
    # wyoming keeps its asyncio server private; reading it gives the real port when asked for port 0
    inner = getattr(server, "_server", None)
    sockets = getattr(inner, "sockets", None) or []
    return sockets[0].getsockname() if sockets else None
