"""The CosyVoice3 engine serving jobs without weights, against the stand-in of upstream's
``CosyVoice3`` (benchmarks/cosyvoice3_standin.py: upstream's API and session handling over
CosyVoice3-shaped networks with random weights).

No registry holds upstream's CosyVoice3 code (PyPI's ``cosyvoice`` 0.0.8 is a third party's wrapper
without ``cosyvoice.cli``; ``cosyvoice-minicpmo`` / ``token2wav-cosyvoice`` 0.1.0 are a June 2025
CosyVoice2 fork with the LLM cut out and no ``CosyVoice3``). The stand-in is small and on the CPU
here; ``COSYVOICE3_STANDIN_SIZE=full`` on a GPU machine runs these tests on CosyVoice3's full
dimensions there (scripts/gpu_check.sh).
"""

from __future__ import annotations

import os
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.cosyvoice3_standin import SAMPLES_PER_TOKEN, TOKENS_PER_CHAR, AutoModel, weights_dir
from edge_agent.engines.base import EngineError, SynthesisRequest
from edge_agent.engines.chain import EngineChain
from edge_agent.engines.cosyvoice3 import SPEAKER_CACHE_MAX, SYSTEM, CosyVoice3Engine
from edge_agent.engines.espeak import EspeakEngine
from edge_agent.engines.settings import EngineSettings
from edge_agent.runner import JobRunner
from voicefleet import protocol as p
from voicefleet.protocol import SpeechSpec, VoicePrompt

SIZE = os.environ.get("COSYVOICE3_STANDIN_SIZE", "small")


# ----------------------------------------------------------------------------- fixtures


def wav_bytes(seed: int) -> bytes:
    """A 24 kHz mono WAV header and some deterministic samples."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.random.default_rng(seed).uniform(-0.3, 0.3, 24000), 24000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's module path, ``cosyvoice.cli.cosyvoice``, served by the stand-in."""
    module = types.ModuleType("cosyvoice.cli.cosyvoice")
    module.AutoModel = AutoModel
    for name in ("cosyvoice", "cosyvoice.cli"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "cosyvoice.cli.cosyvoice", module)


@pytest.fixture
def make_engine(upstream, tmp_path: Path) -> Callable[..., CosyVoice3Engine]:
    weights = weights_dir(tmp_path / "Fun-CosyVoice3-0.5B", SIZE)  # on CUDA where there is one, as upstream

    def make(**settings) -> CosyVoice3Engine:
        return CosyVoice3Engine(weights, EngineSettings(home=tmp_path / "home", **settings))
    return make


@pytest.fixture
def cloned(tmp_path: Path) -> Callable[[str, bytes], VoicePrompt]:
    """A cloned voice's prompt whose clip is at a file: URL (as the control plane's audio URL)."""
    import hashlib

    def make(voice_id: str, data: bytes) -> VoicePrompt:
        path = tmp_path / f"{voice_id}.wav"
        path.write_bytes(data)
        return VoicePrompt(voice_id=voice_id, transcript="今天天气很好。", audio_url=path.as_uri(),
                           sha256=hashlib.sha256(data).hexdigest())
    return make


def clone_job(cloned, voice: str = "v1", seed: int = 2, text: str = "今天下午三点提醒我开会。",
              **spec) -> SynthesisRequest:
    return SynthesisRequest(text, voice=voice, prompt=cloned(voice, wav_bytes(seed)), **spec)


def text_of(tokens) -> str:
    return "".join(chr(int(t)) for t in tokens.reshape(-1))


# ----------------------------------------------------------------------------- what it offers


def test_without_a_default_prompt_it_offers_only_named_voices_and_no_japanese(make_engine):
    caps = make_engine().capabilities
    assert caps.voices == [] and caps.voice_required and caps.cloning
    assert caps.missing_for(SpeechSpec(text="你好")) is not None, "a plain job must not be placed here"
    assert caps.missing_for(SpeechSpec(text="你好", voice="v-cloned")) is None
    assert "ja" not in caps.languages and "zh" in caps.languages


def test_a_default_prompt_offers_the_default_voice_and_speaks_plain_jobs(make_engine, tmp_path: Path):
    clip = tmp_path / "default.wav"
    clip.write_bytes(wav_bytes(1))
    engine = make_engine(cosyvoice_default_prompt=str(clip), cosyvoice_default_text="希望你以后能够做的比我还好呦。")
    assert engine.capabilities.voices == ["default"] and not engine.capabilities.voice_required
    pcm = b"".join(engine.synthesize(SynthesisRequest("今天下午三点开会。")))
    assert len(pcm) > 0
    assert text_of(engine.model.model.inputs[0]["prompt_text"]) == SYSTEM + "希望你以后能够做的比我还好呦。"


def test_fp16_is_a_setting_passed_to_upstreams_constructor(make_engine, monkeypatch: pytest.MonkeyPatch):
    assert make_engine().model.fp16 is False, "fp32 stays the default until measured on a GPU"
    assert make_engine(cosyvoice_fp16=True).model.fp16 is True
    monkeypatch.setenv("VOICEFLEET_COSYVOICE_FP16", "true")
    assert EngineSettings().cosyvoice_fp16 is True


# ----------------------------------------------------------------------------- serving


def test_a_cloned_voice_streams_through_zero_shot_with_its_transcript(make_engine, cloned):
    engine = make_engine()
    chunks = list(engine.synthesize(clone_job(cloned)))
    assert len(chunks) >= 2, "streams in token hops"
    used = engine.model.model.inputs[0]
    assert text_of(used["prompt_text"]) == SYSTEM + "今天天气很好。" and used["llm_prompt_speech_token"].shape[1] > 0
    assert used["stream"] is True
    assert list(engine.model.frontend.spk2info) == [cloned("v1", wav_bytes(2)).sha256], "the job's entry is gone"


def test_the_streamed_audio_is_as_long_as_the_capped_tokens_and_not_silent(make_engine, cloned):
    """Random weights never stop: the stand-in speaks TOKENS_PER_CHAR tokens a character, and the
    chunks the engine streams add up to exactly that much audio, at a level that is heard."""
    text = "今天下午三点提醒我开会。"
    pcm = b"".join(make_engine().synthesize(clone_job(cloned, text=text)))
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    assert len(samples) == len(text) * TOKENS_PER_CHAR * SAMPLES_PER_TOKEN
    assert np.sqrt(np.mean(samples**2)) > 300


def test_every_job_starts_streaming_with_upstreams_short_first_hop(make_engine, cloned):
    """Upstream grows its hop on the shared model and never sets it back; without the engine's reset the
    second job's first chunk would wait for the grown hop."""
    engine = make_engine()
    first = [next(iter(engine.synthesize(clone_job(cloned, seed=seed)))) for seed in (2, 3, 4)]
    assert len({len(chunk) for chunk in first}) == 1, [len(chunk) for chunk in first]


def test_a_dialect_goes_through_instruct2_with_its_instruction_as_prompt_text(make_engine, cloned):
    engine = make_engine()
    list(engine.synthesize(SynthesisRequest("好少咯。", dialect="yue", voice="v1", prompt=cloned("v1", wav_bytes(2)))))
    used = engine.model.model.inputs[0]
    assert text_of(used["prompt_text"]) == "You are a helpful assistant. 请用广东话表达。<|endofprompt|>"
    assert used["llm_prompt_speech_token"].shape[1] == 0, "instruct2 leaves the prompt speech out of the LLM"


def test_a_voice_speaking_another_language_than_its_clip_goes_cross_lingual(make_engine, cloned):
    engine = make_engine()
    list(engine.synthesize(clone_job(cloned, text="See you at three.", lang="en")))  # the clip's words are Chinese
    used = engine.model.model.inputs[0]
    assert used["prompt_text"].shape[1] == 0 and used["llm_prompt_speech_token"].shape[1] == 0, "no prompt in the LLM"
    assert text_of(used["text"]) == SYSTEM + "See you at three."


def test_speaker_features_are_extracted_once_per_clip_sha256(make_engine, cloned):
    engine = make_engine()
    same = wav_bytes(3)
    for voice in ("v-a", "v-b", "v-a"):  # two files (two voices) with the same bytes
        list(engine.synthesize(SynthesisRequest("你好。", voice=voice, prompt=cloned(voice, same))))
    assert len(engine.model.frontend.embeddings) == 1
    list(engine.synthesize(SynthesisRequest("你好。", voice="v-c", prompt=cloned("v-c", wav_bytes(4)))))
    assert len(engine.model.frontend.embeddings) == 2


def test_the_speaker_cache_is_bounded(make_engine, cloned):
    engine = make_engine()
    for seed in range(SPEAKER_CACHE_MAX + 2):
        list(engine.synthesize(clone_job(cloned, f"v{seed}", seed)))
    assert len(engine.model.frontend.spk2info) == SPEAKER_CACHE_MAX
    list(engine.synthesize(SynthesisRequest("你好。", voice="v0", prompt=cloned("v0", wav_bytes(0)))))
    assert len(engine.model.frontend.embeddings) == SPEAKER_CACHE_MAX + 3, "the least recent clip was let go"


def test_cancel_mid_stream_closes_upstreams_generator_and_its_llm_thread_ends(make_engine, cloned):
    engine = make_engine()
    model = engine.model.model
    model.llm_gate.clear()  # the LLM stops after its first hop: the stream is in the middle
    cancel = threading.Event()
    pieces = engine.synthesize(clone_job(cloned), cancelled=cancel.is_set)
    try:
        assert next(pieces)
        cancel.set()
        assert list(pieces) == []
        assert [s() for s in model.sessions] == [None], "upstream's generator was closed, not left suspended"
        assert len(engine.model.frontend.spk2info) == 1, "the job's features entry went with it"
    finally:
        model.llm_gate.set()  # upstream's LLM thread runs to its own end: it cannot be stopped from outside
    for thread in model.threads:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in model.threads)


def test_an_error_mid_stream_closes_upstreams_generator_while_the_error_is_still_held(make_engine, cloned):
    """A traceback keeps the engine's frame, and so upstream's generator, alive; closing it in the
    engine's ``finally`` does not wait for the error to be dropped."""
    engine = make_engine()
    pieces = engine.synthesize(clone_job(cloned))
    assert next(pieces)
    with pytest.raises(RuntimeError) as held:
        pieces.throw(RuntimeError("the agent lost its connection"))
    assert held.value.__traceback__ is not None
    assert [s() for s in engine.model.model.sessions] == [None], "upstream's generator is still suspended"
    for thread in engine.model.model.threads:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in engine.model.model.threads)


def test_cached_gpu_memory_is_released_after_a_cancelled_job(make_engine, cloned, monkeypatch: pytest.MonkeyPatch):
    engine = make_engine()
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    pieces = engine.synthesize(clone_job(cloned), cancelled=lambda: True)
    assert list(pieces) == []
    assert emptied == [1], "upstream empties the cache only at the end of a finished job"


def test_two_jobs_at_once_each_get_their_own_voice(make_engine, cloned):
    engine = make_engine()
    results: dict[str, bytes] = {}

    def speak(voice: str, seed: int) -> None:
        request = SynthesisRequest("今天下午三点提醒我开会。", voice=voice, prompt=cloned(voice, wav_bytes(seed)))
        results[voice] = b"".join(engine.synthesize(request))

    threads = [threading.Thread(target=speak, args=(v, s)) for v, s in (("v1", 5), ("v2", 6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert set(results) == {"v1", "v2"} and all(results.values())
    assert not engine.model.model.tts_speech_token_dict, "both sessions were cleaned up by upstream"


# ----------------------------------------------------------------------------- in the agent's chain


def test_a_job_it_cannot_speak_is_refused_as_unsupported(make_engine):
    with pytest.raises(EngineError) as caught:
        list(make_engine().synthesize(SynthesisRequest("你好")))
    assert caught.value.code == p.UNSUPPORTED and "VOICEFLEET_COSYVOICE_DEFAULT_PROMPT" in caught.value.text


def run_job(runner_engine, job: p.JobAssign) -> list[p.Message]:
    """The agent's job runner on ``runner_engine``: every message it emitted for ``job``."""
    done = threading.Event()
    messages: list[p.Message] = []

    def emit(message: p.Message, _data: bytes | None) -> None:
        messages.append(message)
        if message.kind in ("done", "failed"):
            done.set()

    runner = JobRunner(runner_engine, emit, 1)
    runner.start()
    try:
        runner.submit(job)
        assert done.wait(30), "the job did not finish"
    finally:
        runner.drain(5)
    return messages


def assign(job_id: str, **spec) -> p.JobAssign:
    return p.JobAssign(job_id=job_id, attempt=1, **{"text": "您好，这里是客服中心。", **spec})


def test_a_plain_job_on_a_cloud_chain_without_a_default_prompt_is_spoken_by_the_next_engine(make_engine):
    chain = EngineChain([make_engine(), EspeakEngine()])
    done = run_job(chain, assign("plain", engine="cosyvoice3"))[-1]
    assert done.kind == "done" and done.engine.name == "espeak-ng", done
    assert chain.capabilities.voice_required is False, "the chain as a whole still speaks plain jobs"


def test_a_preset_it_lacks_hands_the_job_to_the_engine_that_has_it(make_engine):
    chain = EngineChain([make_engine(), EspeakEngine()])
    done = run_job(chain, assign("preset", engine="cosyvoice3", voice="female"))[-1]
    assert done.kind == "done" and done.engine.name == "espeak-ng", done
    assert done.fallback.startswith("cosyvoice3 could not speak it"), done.fallback


def test_a_cloned_voice_job_on_the_chain_is_spoken_by_cosyvoice3(make_engine, cloned):
    job = assign("cloned", voice="v1", prompt=cloned("v1", wav_bytes(2)))
    done = run_job(EngineChain([make_engine(), EspeakEngine()]), job)[-1]
    assert done.kind == "done" and done.engine.name == "cosyvoice3" and done.fallback is None, done
