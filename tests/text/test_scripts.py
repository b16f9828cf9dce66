import pytest

from voicefleet.protocol import LANGUAGES
from voicefleet.text.scripts import SCRIPTS, language_of, script_of


@pytest.mark.parametrize("text, script", [
    ("今天天气很好。", "han"), ("レキシ テキ セカイ", "kana"), ("歴史的世界においては", "kana"),
    ("See you at three.", "latin"), ("Привет", "cyrillic"), ("안녕하세요", "hangul"), ("123。", None)])
def test_the_script_of_a_text(text, script):
    assert script_of(text) == script


@pytest.mark.parametrize("text, language", [
    ("今天天气很好。", "zh"), ("歴史的世界においては", "ja"), ("안녕하세요", "ko"), ("Привет", "ru"),
    ("See you at three.", None), ("Bis später.", None), ("123。", None)])
def test_a_script_names_a_language_only_where_one_of_ours_uses_it(text, language):
    assert language_of(text) == language


def test_every_language_has_its_script():
    assert set(SCRIPTS) == set(LANGUAGES)
