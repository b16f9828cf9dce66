"""ONNX export of the trained student, a parity check against PyTorch, and int8 variants.

Two graphs, both free of data-dependent shapes:
- ``encoder.onnx``: phones [1, T] int64 → encodings [1, C, T], log-durations [1, T]
- ``synth.onnx``: frame features [1, C+2, F] (encodings expanded by durations, built by the
  runtime in numpy: ``edge_agent.engines.student.frame_features``) and the constant inverse-DFT
  basis (an input, not a stored constant: 5.8 MB less on disk, and onnxruntime would fold an
  in-graph one at load with ~50 MB of temporaries) → audio [1, F*hop]
The acoustic decoder and the vocoder are fused in ``synth`` so a streamed chunk is one call.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.distill.student import AcousticStudent, VocoderStudent, istft_basis
from models.distill.train import load_students

OPSET = 17


class _Encoder(nn.Module):
    def __init__(self, acoustic: AcousticStudent):
        super().__init__()
        self.acoustic = acoustic

    def forward(self, phones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.acoustic.encode(phones)


class _Synth(nn.Module):
    def __init__(self, acoustic: AcousticStudent, vocoder: VocoderStudent):
        super().__init__()
        self.acoustic, self.vocoder = acoustic, vocoder

    def forward(self, frames: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        return self.vocoder(self.acoustic.decode(frames), basis)


def export_all(work: Path) -> dict:
    acoustic, vocoder, cfg = load_students(work)
    encoder, synth = _Encoder(acoustic).eval(), _Synth(acoustic, vocoder).eval()
    phones = torch.randint(1, cfg.n_symbols, (1, 24))
    frames = torch.randn(1, cfg.phone_dim + 2, 96)
    paths = {"encoder": work / "encoder.onnx", "synth": work / "synth.onnx"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, (phones,), str(paths["encoder"]), input_names=["phones"],
                          output_names=["encodings", "log_durations"], dynamic_axes={"phones": {1: "T"},
                          "encodings": {2: "T"}, "log_durations": {1: "T"}}, opset_version=OPSET, dynamo=False,
                          do_constant_folding=False)
        torch.onnx.export(synth, (frames, istft_basis(cfg.n_fft)), str(paths["synth"]),
                          input_names=["frames", "basis"], output_names=["audio"],
                          dynamic_axes={"frames": {2: "F"}, "audio": {1: "S"}}, opset_version=OPSET, dynamo=False,
                          do_constant_folding=False)
    report = {"parity_max_abs": parity(encoder, synth, paths, cfg.n_symbols, cfg.phone_dim + 2)}
    for name, path in paths.items():
        report[f"{name}_int8"] = str(quantize(path))
    report["config"] = cfg.to_dict()
    return report


def parity(encoder: nn.Module, synth: nn.Module, paths: dict[str, Path], n_symbols: int, channels: int,
           seed: int = 0) -> dict:
    """Largest |PyTorch − onnxruntime| difference of each graph on random inputs."""
    import onnxruntime as ort

    gen = torch.Generator().manual_seed(seed)
    phones = torch.randint(1, n_symbols, (1, 37), generator=gen)
    frames = torch.randn(1, channels, 150, generator=gen)
    out = {}
    from edge_agent.engines.student import istft_basis as numpy_basis

    basis = numpy_basis(synth.vocoder.cfg.n_fft)  # the runtime's basis, so this checks it too
    with torch.no_grad():
        h, log_dur = encoder(phones)
        audio = synth(frames, torch.from_numpy(basis))
    enc = ort.InferenceSession(str(paths["encoder"]), providers=["CPUExecutionProvider"])
    syn = ort.InferenceSession(str(paths["synth"]), providers=["CPUExecutionProvider"])
    h_o, log_dur_o = enc.run(None, {"phones": phones.numpy()})
    (audio_o,) = syn.run(None, {"frames": frames.numpy(), "basis": basis})
    out["encoder"] = float(max(np.abs(h.numpy() - h_o).max(), np.abs(log_dur.numpy() - log_dur_o).max()))
    out["synth"] = float(np.abs(audio.numpy() - audio_o).max())
    return out


def quantize(path: Path) -> Path:
    """Dynamic int8 (weights int8, activations quantised per call) beside ``path``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = path.with_suffix(".prep.onnx")
    out = path.with_name(path.stem + ".int8.onnx")
    quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
    quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=True)
    prepared.unlink()
    return out
