"""Which CosyVoice3 path a cloned voice takes: its recorded language decides; without one, the
script of its transcript (the engine's own tests run the paths; this pins the choice)."""

import pytest

from edge_agent.engines.base import SynthesisRequest
from edge_agent.engines.cosyvoice3 import _other_language
from voicefleet.protocol import VoicePrompt


def request(lang: str, transcript: str, language: str | None) -> SynthesisRequest:
    prompt = VoicePrompt(voice_id="v1", transcript=transcript, audio_url="file:///v1.wav", sha256="0" * 64,
                         language=language)
    return SynthesisRequest("text", lang=lang, voice="v1", prompt=prompt)


@pytest.mark.parametrize("lang, transcript, language, cross", [
    ("de", "See you at three.", "en", True),  # same script, another language: only the voice's language knows
    ("en", "See you at three.", "en", False),
    ("en", "See you at three.", None, False),  # unknown and Latin both ways: zero-shot, as before
    ("en", "今天天气很好。", None, True),  # the script still tells Han from Latin
    ("zh", "今天天气很好。", "zh", False),
    ("en", "今天天气很好。", "zh", True),
])
def test_the_voices_language_decides_cross_lingual(lang, transcript, language, cross):
    assert _other_language(request(lang, transcript, language), transcript) is cross
