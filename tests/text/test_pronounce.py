"""The readings shown to people (``mandarin.readings``, ``voicefleet pronounce``) are the ones the
Mandarin engines speak: one entry per character of the normalised text, null where nothing Han is read."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys

import pytest

from voicefleet.text.mandarin import phrases, readings

CLI = [sys.executable, "-m", "voicefleet_cli", "pronounce"]


@pytest.mark.parametrize(("text", "expected"), [
    ("长江", [("长", "chang2"), ("江", "jiang1")]),
    ("很长", [("很", "hen3"), ("长", "chang2")]),  # the lexicon's fix: pypinyin alone reads zhang3
    ("银行", [("银", "yin2"), ("行", "hang2")]),
    ("一个", [("一", "yi2"), ("个", "ge4")]),  # sandhi of 一 before a fourth tone
    ("A好,", [("A", None), ("好", "hao3"), (",", None)]),
    ("她[h][ào]", [("她", "ta1"), ("[h][ào]", "hao4")]),  # an inline pin: its brackets, its reading
])
def test_each_character_has_the_reading_the_engines_use(text: str, expected: list):
    assert readings(text) == expected


def test_numbers_show_as_the_words_read_for_them():
    assert readings("3个") == [("三", "san1"), ("个", "ge4")]
    assert [c for c, _ in readings("2025年")] == list("二零二五年")


@pytest.mark.parametrize("text", ["长江很长，银行在2025年开了一个小时的会。她[h][ào]干净!", "OK [laughter] 好的"])
def test_readings_and_the_engines_phrases_give_the_same_syllables(text: str):
    assert [s for _, s in readings(text) if s] == [s for p in phrases(text) for s in p.syllables]


def test_the_command_shows_one_text_as_words_with_readings_or_as_json():
    human = subprocess.run([*CLI, "长江, OK"], capture_output=True, text=True, check=True, timeout=120)
    assert human.stdout == "长(chang2) 江(jiang1) , OK\n"
    as_json = subprocess.run([*CLI, "--json", "银行"], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(as_json.stdout) == [{"char": "银", "pinyin": "yin2"}, {"char": "行", "pinyin": "hang2"}]


def test_standard_input_gives_one_json_array_per_line_as_each_line_arrives():
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a user's shell runs it
    with subprocess.Popen([*CLI, "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env=buffered) as proc:
        answers = []
        for line in ("长江", "", "一个A"):
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            answers.append(json.loads(_line_within(proc, 120)))  # answered before the next line is sent
        proc.stdin.close()
        assert proc.stdout.read() == "" and proc.wait(timeout=60) == 0
    assert answers == [[{"char": "长", "pinyin": "chang2"}, {"char": "江", "pinyin": "jiang1"}], [],
                       [{"char": "一", "pinyin": "yi2"}, {"char": "个", "pinyin": "ge4"},
                        {"char": "A", "pinyin": None}]]


def _line_within(proc: subprocess.Popen, timeout_s: float) -> str:
    """The next line the command writes; fails (rather than hangs) if it holds its answer back."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout_s), "no answer: the command did not write the line's readings"
    return proc.stdout.readline()
