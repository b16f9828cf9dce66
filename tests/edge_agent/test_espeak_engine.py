"""EspeakEngine on the real libespeak-ng 1.52 from espeakng-loader (no doubles)."""

from __future__ import annotations

import math
import threading
import time
from array import array

import pytest

from edge_agent.engines.base import EngineError, SynthesisRequest

pytest.importorskip("espeakng_loader", reason="eSpeak NG comes with voicefleet[edge]")

from edge_agent.engines.espeak import EspeakEngine  # noqa: E402

MANDARIN = "今天下午三点提醒我开会"
CANTONESE = "今日下晝三點提醒我開會"
ENGLISH = "Your three pm reminder: the meeting is in room four."
LONG_MANDARIN = "今天下午三点提醒我开会。明天早上八点出发去机场！天气预报说周末会下雨，出门请带伞？" * 10


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    return EspeakEngine()


def _samples(pcm: bytes) -> array:
    assert len(pcm) % 2 == 0
    samples = array("h", pcm)
    if array("h", b"\x01\x00")[0] != 1:  # the wire format is little-endian
        samples.byteswap()
    return samples


def _rms(samples: array) -> float:
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def _speak(engine: EspeakEngine, request: SynthesisRequest) -> tuple[list[bytes], float]:
    chunks = list(engine.synthesize(request))
    return chunks, len(b"".join(chunks)) / 2 / engine.descriptor.sample_rate


def test_descriptor_and_capabilities(engine: EspeakEngine) -> None:
    assert engine.descriptor.name == "espeak-ng"
    assert engine.descriptor.version.startswith("1.52")
    assert engine.descriptor.sample_rate == 22050
    caps = engine.capabilities
    assert caps.languages == ["zh", "en"] and caps.dialects == ["yue"]
    assert "default" in caps.voices and caps.streaming and not caps.cloning and not caps.instructions


@pytest.mark.parametrize(("text", "lang", "dialect"), [(MANDARIN, "zh", None), (CANTONESE, "zh", "yue")])
def test_chinese_is_real_speech_of_plausible_length(engine: EspeakEngine, text: str, lang: str,
                                                    dialect: str | None) -> None:
    chunks, seconds = _speak(engine, SynthesisRequest(text, lang=lang, dialect=dialect))
    assert seconds > 0.5 * len(text) / 10 and seconds > 1.0
    assert seconds < 1.0 * len(text)  # not spelled out character by character in English
    samples = _samples(b"".join(chunks))
    assert _rms(samples) > 1000
    assert max(samples) - min(samples) > 10000


def test_english_is_real_speech(engine: EspeakEngine) -> None:
    chunks, seconds = _speak(engine, SynthesisRequest(ENGLISH, lang="en"))
    assert 1.5 < seconds < 10
    assert _rms(_samples(b"".join(chunks))) > 1000


def test_mandarin_voice_reads_characters_not_pinyin_as_english(engine: EspeakEngine) -> None:
    phonemes = engine.phonemes(SynthesisRequest(MANDARIN))
    assert "(en)" not in phonemes  # eSpeak marks a switch to English like this
    for tone in ("55", "35", "214", "51"):
        assert tone in phonemes
    pinyin = engine.phonemes(SynthesisRequest("jin tian xia wu"))
    assert "(en)" in pinyin  # the cmn voice reads Latin text as English: the check can tell


def test_cantonese_voice_reads_jyutping_tones(engine: EspeakEngine) -> None:
    phonemes = engine.phonemes(SynthesisRequest(CANTONESE, dialect="yue"))
    assert "(en)" not in phonemes
    assert sum(phonemes.count(str(tone)) for tone in range(1, 7)) >= len(CANTONESE)


def test_female_voice_differs_from_default(engine: EspeakEngine) -> None:
    default = b"".join(engine.synthesize(SynthesisRequest(MANDARIN)))
    female = b"".join(engine.synthesize(SynthesisRequest(MANDARIN, voice="female")))
    assert abs(len(female) - len(default)) < 0.2 * len(default) and female != default


def test_long_text_streams_sentence_by_sentence(engine: EspeakEngine) -> None:
    checks = 0

    def cancelled() -> bool:
        nonlocal checks
        checks += 1
        return False

    start = time.perf_counter()
    stream = engine.synthesize(SynthesisRequest(LONG_MANDARIN * 3), cancelled)
    first = next(stream)
    first_at, checks_at_first = time.perf_counter() - start, checks
    chunks = [first, *stream]
    total = time.perf_counter() - start
    assert len(chunks) > 10
    assert checks_at_first == 1  # only the first sentence was synthesised before it came out
    assert checks >= 90  # ... and every later sentence was checked for cancellation
    assert first_at < total / 2
    assert len(first) < len(b"".join(chunks)) / 10


def test_chunks_are_small_even_for_one_long_sentence(engine: EspeakEngine) -> None:
    long_engine = EspeakEngine(max_sentence_chars=1000)
    text = "今天下午三点提醒我开会" * 20
    chunks = list(long_engine.synthesize(SynthesisRequest(text)))
    limit = int(0.5 * engine.descriptor.sample_rate) * 2
    assert len(chunks) > 10
    assert all(0 < len(chunk) <= limit and len(chunk) % 2 == 0 for chunk in chunks)


def test_cancellation_stops_early(engine: EspeakEngine) -> None:
    full = sum(len(chunk) for chunk in engine.synthesize(SynthesisRequest(LONG_MANDARIN)))
    got: list[bytes] = []
    for chunk in engine.synthesize(SynthesisRequest(LONG_MANDARIN), lambda: bool(got)):
        got.append(chunk)
    assert len(got) == 1
    assert len(got[0]) < full / 10
    assert list(engine.synthesize(SynthesisRequest(LONG_MANDARIN), lambda: True)) == []


def test_abandoned_stream_does_not_block_the_next_job(engine: EspeakEngine) -> None:
    stream = engine.synthesize(SynthesisRequest(LONG_MANDARIN))
    next(stream)  # left half-read: the library lock must not be held across a yield
    _, seconds = _speak(engine, SynthesisRequest(ENGLISH, lang="en"))
    assert seconds > 1.5
    stream.close()


def test_concurrent_jobs_do_not_mix_audio(engine: EspeakEngine) -> None:
    requests = [SynthesisRequest(MANDARIN), SynthesisRequest(CANTONESE, dialect="yue"),
                SynthesisRequest(ENGLISH, lang="en")] * 2
    alone = [_speak(engine, request)[1] for request in requests]
    together: list[float] = [0.0] * len(requests)

    def run(i: int) -> None:
        for _ in range(5):
            together[i] = _speak(engine, requests[i])[1]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # eSpeak adds a little random jitter, so lengths match only to within a few samples.
    assert together == pytest.approx(alone, rel=0.02)


@pytest.mark.parametrize(("lang", "dialect", "voice"), [
    ("ja", None, None), ("zh", "hak", None), ("zh", "wuu", None), ("en", "yue", None), ("zh", None, "alice"),
])
def test_unsupported_requests_are_refused_clearly(engine: EspeakEngine, lang: str, dialect: str | None,
                                                  voice: str | None) -> None:
    with pytest.raises(EngineError) as caught:
        next(engine.synthesize(SynthesisRequest("你好", lang=lang, dialect=dialect, voice=voice)))
    assert caught.value.code == "unsupported"
    assert ("zh+yue" in caught.value.text) or ("default" in caught.value.text)


def test_empty_text_is_refused(engine: EspeakEngine) -> None:
    with pytest.raises(EngineError) as caught:
        next(engine.synthesize(SynthesisRequest(" \n ")))
    assert caught.value.code == "empty_text"


def test_inline_markup_becomes_what_espeak_can_read():
    from edge_agent.engines.espeak import espeak_text

    assert espeak_text("她[h][ào]干净[breath]<strong>吗</strong>") == "她 hao4 干净吗"
    assert espeak_text("参考[1]文献") == "参考[1]文献"  # not markup: as written
