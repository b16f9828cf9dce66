"""The CosyVoice3 engine: clear refusals where its package or weights are absent (here), its prompts
in upstream's form, and real synthesis wherever the weights and a GPU are present."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from edge_agent.engines.base import EngineUnavailable, SynthesisRequest
from edge_agent.engines.cosyvoice3 import CosyVoice3Engine, model_dir


def test_missing_weights_are_named_with_the_setting_to_fix(tmp_path: Path):
    with pytest.raises(EngineUnavailable, match="VOICEFLEET_COSYVOICE_DIR"):
        CosyVoice3Engine(tmp_path / "nowhere")


def test_missing_package_is_named(tmp_path: Path):
    if importlib.util.find_spec("cosyvoice") is not None:
        pytest.skip("the cosyvoice package is installed here")
    with pytest.raises(EngineUnavailable, match="cosyvoice"):
        CosyVoice3Engine(tmp_path)


def test_a_cloud_agent_without_cosyvoice3_falls_back_to_the_next_engine():
    from edge_agent.engines import load_engine

    chain = load_engine("cosyvoice3,espeak")
    assert chain.descriptor.name == "espeak-ng"


@pytest.mark.parametrize("request_, expected", [
    (SynthesisRequest(text="你好", dialect="yue"), "You are a helpful assistant. 请用广东话表达。<|endofprompt|>"),
    (SynthesisRequest(text="你好", instruction="用四川话说"),
     "You are a helpful assistant. 请用四川话表达。<|endofprompt|>"),
    (SynthesisRequest(text="你好"), None),
])
def test_instructions_and_dialects_become_upstream_instruct_prompts(request_, expected):
    assert CosyVoice3Engine._instruction(request_) == expected


@pytest.mark.skipif(importlib.util.find_spec("cosyvoice") is None or not model_dir().is_dir()
                    or not os.environ.get("VOICEFLEET_COSYVOICE_DEFAULT_PROMPT"),
                    reason="needs the cosyvoice package, Fun-CosyVoice3 weights and a default prompt (GPU machines)")
def test_real_synthesis_streams_speech():
    engine = CosyVoice3Engine()
    pcm = b"".join(engine.synthesize(SynthesisRequest(text="今天下午三点提醒我开会。", dialect="sichuan")))
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    assert len(samples) / engine.sample_rate > 1.0 and np.sqrt(np.mean(samples**2)) > 300
