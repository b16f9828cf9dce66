"""ONNX export of the trained student, a parity check against PyTorch, and int8 variants.

Two graphs, both free of data-dependent shapes:
- ``encoder.onnx``: phones [1, T] int64 → encodings [1, C, T], log-durations [1, T]
- ``synth.onnx``: frame features [1, C+2, F] (encodings expanded by durations, built by the
  runtime in numpy: ``edge_agent.engines.student.frame_features``) → audio [1, F*hop]
The acoustic decoder and the vocoder are fused in ``synth`` so a streamed chunk is one call.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.distill.student import AcousticStudent, VocoderStudent
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

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.vocoder(self.acoustic.decode(frames))


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
        torch.onnx.export(synth, (frames,), str(paths["synth"]), input_names=["frames"], output_names=["audio"],
                          dynamic_axes={"frames": {2: "F"}, "audio": {1: "S"}}, opset_version=OPSET, dynamo=False,
                          do_constant_folding=False)
    _basis_as_ops(paths["synth"], cfg.n_fft)
    report = {"parity_max_abs": parity(encoder, synth, paths, cfg.n_symbols, cfg.phone_dim + 2)}
    for name, path in paths.items():
        report[f"{name}_int8"] = str(quantize(path))
    report["config"] = cfg.to_dict()
    return report


def _basis_as_ops(path: Path, n_fft: int) -> None:
    """Swap the folded inverse-DFT basis constant (5.8 MB at n_fft 1200) for the ops that make it.

    The tracer folds ``istft_basis`` into one float constant; onnxruntime folds these ops back
    into it when a session loads, so the file shrinks and the run time does not change.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    bins = n_fft // 2 + 1
    node = next(n for n in model.graph.node if n.op_type == "Constant"
                and list(n.attribute[0].t.dims) == [2 * bins, n_fft])
    out = node.output[0]
    weight = np.full((bins, 1), 2.0 / n_fft, np.float32)
    weight[0] /= 2
    if n_fft % 2 == 0:
        weight[-1] /= 2
    window = (0.5 - 0.5 * np.cos(np.arange(n_fft) * 2 * np.pi / n_fft)).astype(np.float32)[None]
    consts = {"b_zero": np.array(0, np.int64), "b_one": np.array(1, np.int64), "b_bins": np.array(bins, np.int64),
              "b_nfft": np.array(n_fft, np.int64), "b_ax0": np.array([0], np.int64), "b_ax1": np.array([1], np.int64),
              "b_scale": np.array(2 * np.pi / n_fft, np.float32), "b_weight": weight, "b_window": window,
              "b_negweight": -weight}
    initializers = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    make = helper.make_node
    nodes = [
        make("Range", ["b_zero", "b_bins", "b_one"], ["b_k0"]), make("Unsqueeze", ["b_k0", "b_ax1"], ["b_k"]),
        make("Range", ["b_zero", "b_nfft", "b_one"], ["b_n0"]), make("Unsqueeze", ["b_n0", "b_ax0"], ["b_n"]),
        make("Mul", ["b_k", "b_n"], ["b_kn"]), make("Mod", ["b_kn", "b_nfft"], ["b_r"]),
        make("Cast", ["b_r"], ["b_rf"], to=TensorProto.FLOAT), make("Mul", ["b_rf", "b_scale"], ["b_angle"]),
        make("Cos", ["b_angle"], ["b_cos"]), make("Sin", ["b_angle"], ["b_sin"]),
        make("Mul", ["b_cos", "b_weight"], ["b_re0"]), make("Mul", ["b_sin", "b_negweight"], ["b_im0"]),
        make("Concat", ["b_re0", "b_im0"], ["b_cat"], axis=0), make("Mul", ["b_cat", "b_window"], [out]),
    ]
    index = list(model.graph.node).index(node)
    model.graph.node.remove(node)
    for offset, new in enumerate(nodes):
        model.graph.node.insert(index + offset, new)
    model.graph.initializer.extend(initializers)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def parity(encoder: nn.Module, synth: nn.Module, paths: dict[str, Path], n_symbols: int, channels: int,
           seed: int = 0) -> dict:
    """Largest |PyTorch − onnxruntime| difference of each graph on random inputs."""
    import onnxruntime as ort

    gen = torch.Generator().manual_seed(seed)
    phones = torch.randint(1, n_symbols, (1, 37), generator=gen)
    frames = torch.randn(1, channels, 150, generator=gen)
    out = {}
    with torch.no_grad():
        h, log_dur = encoder(phones)
        audio = synth(frames)
    enc = ort.InferenceSession(str(paths["encoder"]), providers=["CPUExecutionProvider"])
    syn = ort.InferenceSession(str(paths["synth"]), providers=["CPUExecutionProvider"])
    h_o, log_dur_o = enc.run(None, {"phones": phones.numpy()})
    (audio_o,) = syn.run(None, {"frames": frames.numpy()})
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
