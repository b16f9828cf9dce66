"""The CosyVoice3 engine serving jobs on the CPU without weights, against a stand-in of upstream.

No registry holds upstream's CosyVoice3 code (PyPI's ``cosyvoice`` 0.0.8 is a third party's wrapper
without ``cosyvoice.cli``; ``cosyvoice-minicpmo`` / ``token2wav-cosyvoice`` 0.1.0 are a June 2025
CosyVoice2 fork with the LLM cut out and no ``CosyVoice3``), so the engine runs here against
``UpstreamCosyVoice3StandIn``: upstream's ``CosyVoice3`` (FunAudioLLM/CosyVoice at ace7c47,
``cosyvoice/cli/cosyvoice.py``, ``frontend.py``, ``model.py``) with its methods, signatures and
session handling, and toy numbers where the networks would be.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import types
import uuid as uuid_module
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_agent.engines.base import EngineError, SynthesisRequest
from edge_agent.engines.chain import EngineChain
from edge_agent.engines.cosyvoice3 import SPEAKER_CACHE_MAX, SYSTEM, CosyVoice3Engine, script_of
from edge_agent.engines.espeak import EspeakEngine
from edge_agent.engines.settings import EngineSettings
from edge_agent.runner import JobRunner
from voicefleet import protocol as p
from voicefleet.protocol import SpeechSpec, VoicePrompt

SAMPLES_PER_TOKEN = 960  # 25 speech tokens a second at 24 kHz
# upstream's defaults for what a mode leaves out (``CosyVoice2Model.tts``)
NO_TOKENS, NO_EMBEDDING, NO_FEAT = torch.zeros(1, 0, dtype=torch.int32), torch.zeros(0, 192), torch.zeros(1, 0, 80)


# ----------------------------------------------------------------------------- the stand-in of upstream


class UpstreamFrontEndStandIn:
    """Upstream's ``CosyVoiceFrontEnd``: the frontend_* methods as upstream writes them; the
    extractors (tokenizer, speech tokenizer, CAM++ embedding, mel features) are toy numbers."""

    def __init__(self) -> None:
        self.spk2info: dict[str, dict] = {}
        self.embeddings: list[str] = []  # the clips whose speaker embedding was extracted

    def _extract_text_token(self, text):
        token = torch.tensor([[ord(c) for c in text]], dtype=torch.int32)
        return token, torch.tensor([token.shape[1]], dtype=torch.int32)

    def _extract_speech_token(self, prompt_wav):
        data = Path(prompt_wav).read_bytes()
        token = torch.tensor([list(data[44:44 + 50])], dtype=torch.int32)
        return token, torch.tensor([token.shape[1]], dtype=torch.int32)

    def _extract_spk_embedding(self, prompt_wav):
        self.embeddings.append(str(prompt_wav))
        return torch.ones(1, 192)

    def _extract_speech_feat(self, prompt_wav):
        feat = torch.zeros(1, 100, 80)
        return feat, torch.tensor([feat.shape[1]], dtype=torch.int32)

    def text_normalize(self, text, split=True, text_frontend=True):
        """Upstream's rules without its normalisers: ssml-like text and empty text pass as they are,
        other text is split into sentences."""
        if '<|' in text and '|>' in text:
            text_frontend = False
        if text_frontend is False or text == '':
            return [text] if split is True else text
        text = text.strip()
        texts = [s for s in re.split(r'(?<=[。！？.!?])', text) if s.strip()]
        return texts if split is True else text

    def frontend_zero_shot(self, tts_text, prompt_text, prompt_wav, resample_rate, zero_shot_spk_id):
        tts_text_token, tts_text_token_len = self._extract_text_token(tts_text)
        if zero_shot_spk_id == '':
            prompt_text_token, prompt_text_token_len = self._extract_text_token(prompt_text)
            speech_feat, speech_feat_len = self._extract_speech_feat(prompt_wav)
            speech_token, speech_token_len = self._extract_speech_token(prompt_wav)
            if resample_rate == 24000:
                token_len = min(int(speech_feat.shape[1] / 2), speech_token.shape[1])
                speech_feat, speech_feat_len[:] = speech_feat[:, :2 * token_len], 2 * token_len
                speech_token, speech_token_len[:] = speech_token[:, :token_len], token_len
            embedding = self._extract_spk_embedding(prompt_wav)
            model_input = {'prompt_text': prompt_text_token, 'prompt_text_len': prompt_text_token_len,
                           'llm_prompt_speech_token': speech_token, 'llm_prompt_speech_token_len': speech_token_len,
                           'flow_prompt_speech_token': speech_token, 'flow_prompt_speech_token_len': speech_token_len,
                           'prompt_speech_feat': speech_feat, 'prompt_speech_feat_len': speech_feat_len,
                           'llm_embedding': embedding, 'flow_embedding': embedding}
        else:
            model_input = {**self.spk2info[zero_shot_spk_id]}
        model_input['text'] = tts_text_token
        model_input['text_len'] = tts_text_token_len
        return model_input

    def frontend_cross_lingual(self, tts_text, prompt_wav, resample_rate, zero_shot_spk_id):
        model_input = self.frontend_zero_shot(tts_text, '', prompt_wav, resample_rate, zero_shot_spk_id)
        del model_input['prompt_text']
        del model_input['prompt_text_len']
        del model_input['llm_prompt_speech_token']
        del model_input['llm_prompt_speech_token_len']
        return model_input

    def frontend_instruct2(self, tts_text, instruct_text, prompt_wav, resample_rate, zero_shot_spk_id):
        model_input = self.frontend_zero_shot(tts_text, instruct_text, prompt_wav, resample_rate, zero_shot_spk_id)
        del model_input['llm_prompt_speech_token']
        del model_input['llm_prompt_speech_token_len']
        return model_input


class UpstreamModelStandIn:
    """Upstream's ``CosyVoice3Model`` session handling (``CosyVoice2Model.tts``): per-session dicts
    under a lock, the LLM in its own thread, streaming by token hops, and clean-up after the loop,
    not in a ``finally`` (as upstream). The LLM's tokens are capped by the text's length, as random
    weights never stop; ``llm_gate`` holds it after its first hop (a stream in the middle)."""

    def __init__(self, fp16: bool = False) -> None:
        self.fp16 = fp16
        self.token_hop_len = 25
        self.lock = threading.Lock()
        self.tts_speech_token_dict: dict[str, list[int]] = {}
        self.llm_end_dict: dict[str, bool] = {}
        self.hift_cache_dict: dict[str, object] = {}
        self.llm_gate = threading.Event()
        self.llm_gate.set()
        self.threads: list[threading.Thread] = []
        self.sessions: list[weakref.ref] = []  # tts generators, weakly: a strong reference would keep them open
        self.inputs: list[dict] = []

    def llm_job(self, text, prompt_text, llm_prompt_speech_token, llm_embedding, uuid):
        for i in range(min(200, 10 * text.shape[1])):
            if i == self.token_hop_len:
                self.llm_gate.wait()
            self.tts_speech_token_dict[uuid].append(i % 6561)
        self.llm_end_dict[uuid] = True

    def token2wav(self, token: list[int]):
        t = torch.arange(len(token) * SAMPLES_PER_TOKEN, dtype=torch.float32) / 24000
        return (0.3 * torch.sin(2 * torch.pi * 220 * t)).unsqueeze(0)

    def tts(self, text=NO_TOKENS, flow_embedding=NO_EMBEDDING, llm_embedding=NO_EMBEDDING, prompt_text=NO_TOKENS,
            llm_prompt_speech_token=NO_TOKENS, flow_prompt_speech_token=NO_TOKENS, prompt_speech_feat=NO_FEAT,
            source_speech_token=NO_TOKENS, stream=False, speed=1.0, **kwargs):
        self.inputs.append({'prompt_text': prompt_text, 'llm_prompt_speech_token': llm_prompt_speech_token,
                            'text': text, 'stream': stream})
        generator = self._tts(text, prompt_text, llm_prompt_speech_token, llm_embedding, stream)
        self.sessions.append(weakref.ref(generator))
        return generator

    def _tts(self, text, prompt_text, llm_prompt_speech_token, llm_embedding, stream):
        this_uuid = str(uuid_module.uuid1())
        with self.lock:
            self.tts_speech_token_dict[this_uuid], self.llm_end_dict[this_uuid] = [], False
            self.hift_cache_dict[this_uuid] = None
        p_ = threading.Thread(target=self.llm_job, args=(text, prompt_text, llm_prompt_speech_token, llm_embedding,
                                                         this_uuid))
        self.threads.append(p_)
        p_.start()
        token_offset = 0
        if stream is True:
            while True:
                time.sleep(0.01)  # upstream polls every 0.1 s
                tokens = self.tts_speech_token_dict[this_uuid]
                if len(tokens) - token_offset >= self.token_hop_len:
                    yield {'tts_speech': self.token2wav(tokens[token_offset:token_offset + self.token_hop_len])}
                    token_offset += self.token_hop_len
                if self.llm_end_dict[this_uuid] is True and len(tokens) - token_offset < self.token_hop_len:
                    break
        p_.join()
        yield {'tts_speech': self.token2wav(self.tts_speech_token_dict[this_uuid][token_offset:])}
        with self.lock:
            self.tts_speech_token_dict.pop(this_uuid)
            self.llm_end_dict.pop(this_uuid)
            self.hift_cache_dict.pop(this_uuid)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class UpstreamCosyVoice3StandIn:
    """Upstream's ``CosyVoice3`` public surface as written in ``cosyvoice/cli/cosyvoice.py``: the
    constructor's arguments (fp16 turned off in the model where there is no CUDA, as upstream does),
    ``add_zero_shot_spk``, ``inference_zero_shot``, ``inference_cross_lingual``, ``inference_instruct2``."""

    def __init__(self, model_dir, load_trt=False, load_vllm=False, fp16=False, trt_concurrent=1):
        self.model_dir = model_dir
        self.fp16 = fp16
        if not Path(model_dir, 'cosyvoice3.yaml').exists():
            raise ValueError(f'{model_dir}/cosyvoice3.yaml not found!')
        self.frontend = UpstreamFrontEndStandIn()
        self.sample_rate = 24000
        if torch.cuda.is_available() is False and (load_trt is True or fp16 is True):
            load_trt, fp16 = False, False
        self.model = UpstreamModelStandIn(fp16)

    def add_zero_shot_spk(self, prompt_text, prompt_wav, zero_shot_spk_id):
        assert zero_shot_spk_id != '', 'do not use empty zero_shot_spk_id'
        model_input = self.frontend.frontend_zero_shot('', prompt_text, prompt_wav, self.sample_rate, '')
        del model_input['text']
        del model_input['text_len']
        self.frontend.spk2info[zero_shot_spk_id] = model_input
        return True

    def inference_zero_shot(self, tts_text, prompt_text, prompt_wav, zero_shot_spk_id='', stream=False, speed=1.0,
                            text_frontend=True):
        prompt_text = self.frontend.text_normalize(prompt_text, split=False, text_frontend=text_frontend)
        for i in self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend):
            model_input = self.frontend.frontend_zero_shot(i, prompt_text, prompt_wav, self.sample_rate,
                                                           zero_shot_spk_id)
            for model_output in self.model.tts(**model_input, stream=stream, speed=speed):  # noqa: UP028 (upstream's)
                yield model_output

    def inference_cross_lingual(self, tts_text, prompt_wav, zero_shot_spk_id='', stream=False, speed=1.0,
                                text_frontend=True):
        for i in self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend):
            model_input = self.frontend.frontend_cross_lingual(i, prompt_wav, self.sample_rate, zero_shot_spk_id)
            for model_output in self.model.tts(**model_input, stream=stream, speed=speed):  # noqa: UP028 (upstream's)
                yield model_output

    def inference_instruct2(self, tts_text, instruct_text, prompt_wav, zero_shot_spk_id='', stream=False, speed=1.0,
                            text_frontend=True):
        for i in self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend):
            model_input = self.frontend.frontend_instruct2(i, instruct_text, prompt_wav, self.sample_rate,
                                                           zero_shot_spk_id)
            for model_output in self.model.tts(**model_input, stream=stream, speed=speed):  # noqa: UP028 (upstream's)
                yield model_output


def AutoModel(**kwargs):  # noqa: N802 (upstream's name)
    """Upstream's ``AutoModel``, for the CosyVoice3 case."""
    if Path(kwargs['model_dir'], 'cosyvoice3.yaml').exists():
        return UpstreamCosyVoice3StandIn(**kwargs)
    raise TypeError('No valid model type found!')


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
    weights = tmp_path / "Fun-CosyVoice3-0.5B"
    weights.mkdir()
    (weights / "cosyvoice3.yaml").write_text("# the stand-in reads nothing from it\n")

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


@pytest.mark.parametrize("text, script", [
    ("今天天气很好。", "han"), ("レキシ テキ セカイ", "kana"), ("歴史的世界においては", "kana"),
    ("See you at three.", "latin"), ("Привет", "cyrillic"), ("안녕하세요", "hangul"), ("123。", None)])
def test_the_script_of_a_transcript(text, script):
    assert script_of(text) == script


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
