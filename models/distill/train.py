"""Training loops for the two student networks, with checkpoints and resume.

Each loop runs until a step count or a wall-clock budget is used up (whichever comes first),
saves a checkpoint every ``save_every_s`` seconds and at the end, and picks up from an existing
checkpoint in ``out_dir`` (same config) instead of starting over. The learning rate follows a
cosine from the progress fraction, so a time-budgeted run anneals properly on any hardware.
A run can start from a shipped bundle's weights (``bundle_weights``: the ONNX graphs keep every
parameter under its PyTorch name) at a lower learning rate: a CPU cannot redo a GPU's training
in a session, but it can fine-tune the student on a corpus that covers what it got wrong.

- acoustic: L1 on log-mel frames (masked) + MSE on log(1 + duration) per phone.
- vocoder: on random 0.8 s windows, multi-resolution STFT losses (spectral convergence and
  log-magnitude) plus L1 on the log-mel of its output. The teacher is deterministic, so plain
  regression on its output distils well without an adversarial loss.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from models.distill.dataset import Dataset
from models.distill.features import LogMel
from models.distill.student import AcousticStudent, StudentConfig, VocoderStudent, count_parameters

_STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))


class Budget:
    def __init__(self, max_steps: int, seconds: float, elapsed: float = 0.0):
        self.max_steps, self.seconds = max_steps, seconds
        self._start = time.monotonic() - elapsed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def progress(self, step: int) -> float:
        return min(1.0, max(step / self.max_steps, self.elapsed / self.seconds))


def _lr(base: float, step: int, progress: float, warmup: int = 200) -> float:
    return base * min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _cached_mels(data: Dataset, cfg: StudentConfig, device: torch.device) -> list[torch.Tensor]:
    logmel = LogMel(cfg).to(device)
    with torch.no_grad():
        return [logmel(torch.from_numpy(a).to(device)[None])[0] for a in data.audio]


def _load(path: Path, model, opt, cfg: StudentConfig) -> tuple[int, float, dict]:
    if not path.exists():
        return 0, 0.0, {}
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["cfg"] != cfg.to_dict():
        raise ValueError(f"{path} was trained with another config; delete it or use a new --work dir")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    return state["step"], state["elapsed"], state.get("log", {})  # a resume with no step left keeps its losses


def _save(path: Path, model, opt, cfg: StudentConfig, step: int, elapsed: float, log: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "cfg": cfg.to_dict(), "step": step,
                "elapsed": elapsed, "log": log}, tmp)
    tmp.replace(path)  # a crash mid-save leaves the previous checkpoint intact


FINE_TUNE_LR_SCALE = 0.25  # of the from-scratch learning rate, when starting from a bundle's weights


def bundle_weights(bundle: Path) -> dict[str, dict[str, torch.Tensor]]:
    """{"acoustic": state dict, "vocoder": state dict} read back from a bundle's fp32 graphs."""
    import onnx
    from onnx import numpy_helper

    out: dict[str, dict[str, torch.Tensor]] = {"acoustic": {}, "vocoder": {}}
    for graph in ("encoder.onnx", "synth.onnx"):
        for tensor in onnx.load(str(bundle / graph)).graph.initializer:
            net, _, key = tensor.name.partition(".")
            if net in out:
                out[net][key] = torch.from_numpy(numpy_helper.to_array(tensor).copy())
    return out


def _loop(name: str, model, step_fn, out_dir: Path, cfg: StudentConfig, *, lr: float, max_steps: int,
          seconds: float, save_every_s: float, log_every: int, init: dict | None = None) -> dict:
    if init is not None:  # a checkpoint in out_dir (a resumed run) overrides it below
        model.load_state_dict(init)
        lr *= FINE_TUNE_LR_SCALE
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=0.01)
    path = out_dir / f"{name}.pt"
    step, elapsed, log = _load(path, model, opt, cfg)
    budget, last_save = Budget(max_steps, seconds, elapsed), time.monotonic()
    model.train()
    while step < max_steps and budget.elapsed < seconds:
        for group in opt.param_groups:
            group["lr"] = _lr(lr, step, budget.progress(step))
        losses = step_fn()
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % log_every == 0 or step == 1:
            log = {k: round(float(v), 4) for k, v in losses.items()}
            print(json.dumps({"model": name, "step": step, "t": round(budget.elapsed), **log}), flush=True)
        if time.monotonic() - last_save > save_every_s:
            _save(path, model, opt, cfg, step, budget.elapsed, log)
            last_save = time.monotonic()
    _save(path, model, opt, cfg, step, budget.elapsed, log)
    return {"steps": step, "seconds": round(budget.elapsed, 1), "last_losses": log,
            "parameters": count_parameters(model), "fine_tuned": init is not None}


def train_acoustic(data: Dataset, cfg: StudentConfig, out_dir: Path, device: str = "cpu", *, batch: int = 16,
                   max_steps: int = 10**9, seconds: float = 600, save_every_s: float = 60, seed: int = 0,
                   init: dict | None = None) -> dict:
    dev = torch.device(device)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    mels = _cached_mels(data, cfg, dev)
    ids = [torch.from_numpy(x).to(dev) for x in data.ids]
    durs = [torch.from_numpy(x).to(dev) for x in data.durations]
    model = AcousticStudent(cfg).to(dev)

    def step_fn() -> dict:
        pick = [rng.randrange(len(ids)) for _ in range(batch)]
        phones = _pad([ids[i] for i in pick])
        durations = _pad([durs[i] for i in pick])
        target = _pad([mels[i].T for i in pick]).transpose(1, 2)  # [B, 80, F]
        pred, log_dur = model(phones, durations)
        frames = target.shape[2]
        pred = pred[..., :frames]
        mask = (torch.arange(frames, device=dev)[None] < durations.sum(1, keepdim=True)).unsqueeze(1)
        mel_loss = ((pred - target).abs() * mask).sum() / (mask.sum() * cfg.n_mels)
        id_mask = (phones != 0).float()
        dur_loss = (((log_dur - torch.log1p(durations.float())) ** 2) * id_mask).sum() / id_mask.sum()
        return {"mel_l1": mel_loss, "dur_mse": dur_loss}

    return _loop("acoustic", model, step_fn, out_dir, cfg, lr=2e-3, max_steps=max_steps, seconds=seconds,
                 save_every_s=save_every_s, log_every=100, init=init)


def train_vocoder(data: Dataset, cfg: StudentConfig, out_dir: Path, device: str = "cpu", *, batch: int = 16,
                  window: int = 64, max_steps: int = 10**9, seconds: float = 600, save_every_s: float = 60,
                  seed: int = 0, init: dict | None = None) -> dict:
    dev = torch.device(device)
    torch.manual_seed(seed)
    rng = random.Random(seed + 1)
    mels = _cached_mels(data, cfg, dev)
    audio = [torch.from_numpy(a).to(dev) for a in data.audio]
    model = VocoderStudent(cfg).to(dev)
    logmel = LogMel(cfg).to(dev)
    windows = {n: torch.hann_window(n, device=dev) for n, _ in _STFT_RESOLUTIONS}

    def step_fn() -> dict:
        mel_b, wav_b = [], []
        for _ in range(batch):
            i = rng.randrange(len(mels))
            mel, wav = mels[i], audio[i]
            if mel.shape[1] < window:
                mel = F.pad(mel, (0, window - mel.shape[1]), value=math.log(1e-7))
                wav = F.pad(wav, (0, window * cfg.hop - len(wav)))
            start = rng.randrange(mel.shape[1] - window + 1)
            mel_b.append(mel[:, start:start + window])
            wav_b.append(wav[start * cfg.hop:(start + window) * cfg.hop])
        mel_in, target = torch.stack(mel_b), torch.stack(wav_b)
        out = model(mel_in)
        sc, mag = _stft_losses(out, target, windows)
        return {"sc": sc, "log_mag": mag, "mel_l1": (logmel(out) - logmel(target)).abs().mean()}

    return _loop("vocoder", model, step_fn, out_dir, cfg, lr=1e-3, max_steps=max_steps, seconds=seconds,
                 save_every_s=save_every_s, log_every=200, init=init)


def _stft_losses(out: torch.Tensor, target: torch.Tensor, windows: dict) -> tuple[torch.Tensor, torch.Tensor]:
    sc = mag = 0.0
    for n_fft, hop in _STFT_RESOLUTIONS:
        s_out = torch.stft(out, n_fft, hop, window=windows[n_fft], return_complex=True).abs().clamp(min=1e-7)
        s_ref = torch.stft(target, n_fft, hop, window=windows[n_fft], return_complex=True).abs().clamp(min=1e-7)
        sc = sc + torch.linalg.norm(s_ref - s_out) / torch.linalg.norm(s_ref)
        mag = mag + (torch.log(s_out) - torch.log(s_ref)).abs().mean()
    return sc / len(_STFT_RESOLUTIONS), mag / len(_STFT_RESOLUTIONS)


def _pad(seqs: list[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)


def load_students(out_dir: Path) -> tuple[AcousticStudent, VocoderStudent, StudentConfig]:
    """The trained networks from their checkpoints, in eval mode on the CPU."""
    states = {name: torch.load(out_dir / f"{name}.pt", map_location="cpu", weights_only=False)
              for name in ("acoustic", "vocoder")}
    cfg = StudentConfig(**states["acoustic"]["cfg"])
    acoustic, vocoder = AcousticStudent(cfg), VocoderStudent(cfg)
    acoustic.load_state_dict(states["acoustic"]["model"])
    vocoder.load_state_dict(states["vocoder"]["model"])
    return acoustic.eval(), vocoder.eval(), cfg
