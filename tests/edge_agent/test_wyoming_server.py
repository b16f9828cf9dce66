"""The Wyoming TTS server on real sockets with the real engines (committed student + eSpeak NG),
driven by the wyoming package's own client."""

from __future__ import annotations

import asyncio
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

pytest.importorskip("wyoming", reason="the Wyoming server needs `pip install wyoming==1.10.2`")

from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncClient, AsyncTcpClient  # noqa: E402
from wyoming.error import Error  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.tts import (  # noqa: E402
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from edge_agent.engines import load_engine  # noqa: E402
from edge_agent.wyoming_server import SentenceBuffer, WyomingTtsServer, request_fields  # noqa: E402

MANDARIN = "今天下午三点提醒我开会。"
CANTONESE = "今日下晝三點提醒我開會"
SILENCE_RMS = 100.0
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def server() -> Iterator[WyomingTtsServer]:
    wyoming_server = WyomingTtsServer(load_engine("student,espeak"), port=0)
    stop = wyoming_server.serve_in_thread()
    try:
        yield wyoming_server
    finally:
        stop()


def _client(server: WyomingTtsServer) -> AsyncTcpClient:
    host, port = server.address[:2]
    return AsyncTcpClient(host, port)


@dataclass
class Reply:
    start: AudioStart | None = None
    chunks: list[AudioChunk] = field(default_factory=list)
    stopped: bool = False
    errors: list[Error] = field(default_factory=list)
    synthesize_stopped: bool = False

    @property
    def pcm(self) -> bytes:
        return b"".join(c.audio for c in self.chunks)


async def _read_until(client: AsyncClient, done: str, reply: Reply | None = None) -> Reply:
    """Events until one of type ``done`` (audio-stop, error or synthesize-stopped) arrives."""
    reply = reply or Reply()
    while True:
        event = await asyncio.wait_for(client.read_event(), TIMEOUT)
        assert event is not None, "server closed the connection"
        if AudioStart.is_type(event.type):
            assert reply.start is None, "audio-start sent twice"
            reply.start = AudioStart.from_event(event)
        elif AudioChunk.is_type(event.type):
            assert reply.start is not None and not reply.stopped
            reply.chunks.append(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type):
            reply.stopped = True
        elif Error.is_type(event.type):
            reply.errors.append(Error.from_event(event))
        elif SynthesizeStopped.is_type(event.type):
            reply.synthesize_stopped = True
        if event.type == done:
            return reply


def _rms(pcm: bytes) -> float:
    samples = array("h", pcm)
    if array("h", b"\x01\x00")[0] != 1:
        samples.byteswap()
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def _assert_audio(reply: Reply, rate: int) -> None:
    assert not reply.errors, reply.errors
    assert reply.start is not None and (reply.start.rate, reply.start.width, reply.start.channels) == (rate, 2, 1)
    assert reply.chunks and all(c.audio and c.rate == rate for c in reply.chunks)
    assert reply.stopped
    assert len(reply.pcm) % 2 == 0
    assert _rms(reply.pcm) > SILENCE_RMS


async def _one_shot(client: AsyncClient, text: str, voice: SynthesizeVoice | None = None) -> Reply:
    await client.write_event(Synthesize(text=text, voice=voice).event())
    return await _read_until(client, "audio-stop")


def test_describe_lists_the_voicefleet_program_and_voices(server: WyomingTtsServer) -> None:
    async def scenario() -> Info:
        async with _client(server) as client:
            await client.write_event(Describe().event())
            event = await asyncio.wait_for(client.read_event(), TIMEOUT)
            assert event is not None and Info.is_type(event.type)
            return Info.from_event(event)

    info = asyncio.run(scenario())
    assert [p.name for p in info.tts] == ["voicefleet"]
    program = info.tts[0]
    assert program.installed and program.version and program.attribution.name == "voicefleet"
    assert program.supports_synthesize_streaming
    languages = {lang for v in program.voices for lang in v.languages}
    assert {"zh", "en", "yue"} <= languages
    names = {v.name for v in program.voices}
    assert {"zh-default", "yue-default", "en-default"} <= names
    assert all(v.installed for v in program.voices)
    zh = next(v for v in program.voices if v.name == "zh-default")
    assert "student" in (zh.description or "")


def test_one_shot_mandarin_streams_student_audio(server: WyomingTtsServer) -> None:
    async def scenario() -> Reply:
        async with _client(server) as client:
            return await _one_shot(client, MANDARIN, SynthesizeVoice(language="zh"))

    _assert_audio(asyncio.run(scenario()), 24000)


def test_streaming_text_speaks_sentences_as_they_complete(server: WyomingTtsServer) -> None:
    pieces = ["今天下午三", "点提醒我开会。明天早", "上八点出发", "去机场！天气很好"]

    async def scenario() -> tuple[Reply, Reply, int]:
        async with _client(server) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="zh-default")).event())
            for piece in pieces[:2]:
                await client.write_event(SynthesizeChunk(text=piece).event())
            # the first sentence is complete: its audio must come before any more text is sent
            reply = Reply()
            event = await asyncio.wait_for(client.read_event(), TIMEOUT)
            assert event is not None and AudioStart.is_type(event.type)
            reply.start = AudioStart.from_event(event)
            event = await asyncio.wait_for(client.read_event(), TIMEOUT)
            assert event is not None and AudioChunk.is_type(event.type)
            reply.chunks.append(AudioChunk.from_event(event))
            for piece in pieces[2:]:
                await client.write_event(SynthesizeChunk(text=piece).event())
            # the compatibility copy of the whole text must not be spoken a second time
            await client.write_event(Synthesize(text="".join(pieces), voice=SynthesizeVoice(name="zh-default")).event())
            await client.write_event(SynthesizeStop().event())
            rest = await _read_until(client, "synthesize-stopped", reply)
            # the connection then serves a plain request again
            after = await _one_shot(client, "".join(pieces))
            return rest, after, len(rest.pcm)

    reply, after, streamed_bytes = asyncio.run(scenario())
    _assert_audio(reply, 24000)
    assert reply.synthesize_stopped
    _assert_audio(after, 24000)
    # the three sentences spoken once (not again for the compatibility `synthesize`): about as long as one shot
    assert 0.7 < streamed_bytes / len(after.pcm) < 1.4, (streamed_bytes, len(after.pcm))


def test_cantonese_voice_falls_to_espeak_at_its_own_rate(server: WyomingTtsServer) -> None:
    async def scenario() -> tuple[Reply, ...]:
        async with _client(server) as client:
            by_language = await _one_shot(client, CANTONESE, SynthesizeVoice(language="yue"))
            by_name = await _one_shot(client, CANTONESE, SynthesizeVoice(name="yue-default"))
            by_subtags = [await _one_shot(client, CANTONESE, SynthesizeVoice(language=tag))
                          for tag in ("zh-HK", "zh-yue")]  # BCP 47 says Cantonese both ways
            return by_language, by_name, *by_subtags

    for reply in asyncio.run(scenario()):
        _assert_audio(reply, 22050)


def test_errors_come_back_as_error_events_and_the_connection_lives_on(server: WyomingTtsServer) -> None:
    async def scenario() -> tuple[Reply, Reply, Reply, Reply, Reply]:
        async with _client(server) as client:
            empty = await _read_after(client, Synthesize(text="   "))
            unsupported = await _read_after(client, Synthesize(text="Bonjour.", voice=SynthesizeVoice(language="fr")))
            unknown_voice = await _read_after(client, Synthesize(text="你好", voice=SynthesizeVoice(name="nobody")))
            # the student itself rejects Latin-only text: an error before any audio-start
            rejected = await _read_after(client, Synthesize(text="Hello.", voice=SynthesizeVoice(name="zh-default")))
            ok = await _one_shot(client, MANDARIN)
            return empty, unsupported, unknown_voice, rejected, ok

    empty, unsupported, unknown_voice, rejected, ok = asyncio.run(scenario())
    for reply in (empty, unsupported, unknown_voice, rejected):
        assert len(reply.errors) == 1 and reply.errors[0].text and reply.start is None
    assert "fr" in unsupported.errors[0].text
    _assert_audio(ok, 24000)


async def _read_after(client: AsyncClient, request: Synthesize) -> Reply:
    await client.write_event(request.event())
    return await _read_until(client, "error")


def test_streaming_with_an_unsupported_language_errors_then_stops(server: WyomingTtsServer) -> None:
    async def scenario() -> Reply:
        async with _client(server) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(language="fr")).event())
            await client.write_event(SynthesizeChunk(text="Bonjour.").event())
            await client.write_event(SynthesizeStop().event())
            return await _read_until(client, "synthesize-stopped")

    reply = asyncio.run(scenario())
    assert len(reply.errors) == 1 and reply.synthesize_stopped and not reply.chunks


def test_sentence_buffer_holds_back_the_unfinished_tail() -> None:
    buffer = SentenceBuffer()
    assert buffer.feed("今天下午三") == []
    assert buffer.feed("点开会。明天") == ["今天下午三点开会。"]
    assert buffer.feed("见！") == ["明天见！"]
    assert buffer.feed("It costs 3.") == []  # "3." may become "3.5"
    assert buffer.feed("5 dollars. The") == ["It costs 3.5 dollars."]
    assert buffer.feed(" end") == []
    assert buffer.flush() == ["The end"]


def test_language_tags_map_to_request_fields() -> None:
    assert request_fields("yue", ["yue"]) == ("zh", "yue")
    assert request_fields("zh-HK", ["yue"]) == ("zh", "yue")
    assert request_fields("zh-yue", ["yue"]) == request_fields("zh_YUE", ["yue"]) == ("zh", "yue")
    assert request_fields("zh-yue", []) == ("zh", None)  # no engine speaks it: Mandarin, as for zh-HK
    assert request_fields("zh_CN", ["yue"]) == ("zh", None)
    assert request_fields("en-US", ["yue"]) == ("en", None)


def test_unix_socket(tmp_path) -> None:
    path = tmp_path / "tts.sock"
    wyoming_server = WyomingTtsServer(load_engine("student,espeak"), uri=f"unix://{path}")
    stop = wyoming_server.serve_in_thread()

    async def scenario() -> Reply:
        async with AsyncClient.from_uri(f"unix://{path}") as client:
            return await _one_shot(client, "你好。")

    try:
        _assert_audio(asyncio.run(scenario()), 24000)
    finally:
        stop()
    assert not path.exists()
