"""The polyphone measures: CPP's alignment, the notation, the hand-labelled everyday sentences, and
the benchmark's JSON on a slice of each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks.cpp import CPP_DIR, EVERYDAY, EVERYDAY_B, SYSTEMS, load, load_everyday, normal, score  # noqa: E402

needs_cpp = pytest.mark.skipif(not (CPP_DIR / "dev.sent").exists(), reason="CPP dev split not present")
FIRST = "1990年9月15日，在克里米亚发现了此天体。"  # dev.sent line 1, 了 marked (checked by hand)


@needs_cpp
def test_marked_character_index_and_label_come_from_the_data():
    items = load(limit=200)
    assert len(items) == 200
    assert items[0] == (FIRST, 18, "le5") and FIRST[18] == "了"
    assert all(sentence[index] != "\u2581" and "\u2581" not in sentence for sentence, index, _ in items)


def test_both_sides_share_one_notation():
    assert [normal(s) for s in ("nu:e4", "lü4", "NV3", "ju:4", "yu2", "ma", "le5")] == \
        ["nve4", "lv4", "nv3", "ju4", "yu2", "ma5", "le5"]
    assert normal(None) is None and normal("") is None


@needs_cpp
@pytest.mark.parametrize("name", ["ours", "pypinyin", "g2pM"])
def test_each_system_reads_one_syllable_per_character_in_place(name):
    if name == "g2pM":
        pytest.importorskip("g2pM")
    out = SYSTEMS[name]()(FIRST)
    assert len(out) == len(FIRST)
    assert [normal(out[i]) for i in (11, 12, 18, 19)] == ["zai4", "ke4", "le5", "ci3"]  # 在克 … 了此
    assert out[0] in (None, "1")  # a digit is not read as a syllable


@needs_cpp
def test_accuracy_is_counted_from_the_labels():
    items = load(limit=200)
    labels = {sentence: (index, label) for sentence, index, label in items}

    def oracle_stand_in(sentence):
        index, label = labels[sentence]
        return [label if i == index else None for i in range(len(sentence))]

    def half_wrong_stand_in(sentence):
        out = oracle_stand_in(sentence)
        index = labels[sentence][0]
        out[index] = out[index] if index % 2 else "xx1"
        return out

    assert score(oracle_stand_in, items)["accuracy"] == 1.0
    half = score(half_wrong_stand_in, items)
    assert half["right"] == sum(index % 2 for _, index, _ in items) and half["unaligned"] == 0
    nothing = score(lambda s: [None] * len(s), items)
    assert nothing["accuracy"] == 0.0 and nothing["unaligned"] == 200


@needs_cpp
def test_benchmark_json_reports_each_system_side_by_side():
    pytest.importorskip("g2pM")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "frontend.py"), "--json", "--parts", "cpp",
                           "--cpp-sentences", "200"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    cpp = json.loads(done.stdout)["cpp"]
    assert cpp["sentences"] == 200 and cpp["threads"] == 1 and set(cpp["systems"]) == {"ours", "pypinyin", "g2pM"}
    for fig in cpp["systems"].values():
        assert 0 <= fig["accuracy"] <= 1 and fig["sentences"] == 200
        assert fig["accuracy"] == round(fig["right"] / 200, 4) and fig["chars_per_s"] > 0
    assert all(fig["right"] > 100 for fig in cpp["systems"].values())  # aligned: a shift would miss most


def test_everyday_sentences_mark_one_han_character_with_a_label_in_one_notation():
    first, second = load_everyday(), load_everyday(EVERYDAY_B)
    assert first[0] == ("他为这件事忙了一天", 1, "wei4") and second[0] == ("明天记得把钥匙还给我", 7, "huan2")
    items = first + second
    assert len(first) >= 80 and len(second) >= 100 and len({sentence for sentence, _, _ in items}) == len(items)
    for sentence, index, label in items:
        assert "\u4e00" <= sentence[index] <= "\u9fff" and "\u2581" not in sentence
        assert normal(label) == label and label[-1] in "12345"


def test_benchmark_json_reports_everyday_accuracy_side_by_side():
    pytest.importorskip("g2pM")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "frontend.py"), "--json", "--parts", "everyday"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    everyday = json.loads(done.stdout)["everyday"]
    assert set(everyday) == {EVERYDAY.name, EVERYDAY_B.name}
    for path in (EVERYDAY, EVERYDAY_B):
        figures, n = everyday[path.name], len(load_everyday(path))
        assert figures["sentences"] == n and set(figures["systems"]) == {"ours", "pypinyin", "g2pM"}
        for fig in figures["systems"].values():
            assert fig["accuracy"] == round(fig["right"] / n, 4) and fig["unaligned"] == 0
