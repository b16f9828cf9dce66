"""Log-mel features shared by the acoustic student (its target) and the vocoder (its input).

Computed from the teacher's audio, never taken from the teacher's internals, so any engine that
returns audio can teach. One frame per ``hop`` samples: frame f covers sample f*hop ± n_fft/2.
"""

from __future__ import annotations

import math

import torch

from models.distill.student import StudentConfig


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_filterbank(cfg: StudentConfig, n_fft: int = 1200) -> torch.Tensor:
    """[n_mels, n_fft//2+1] triangular filters, HTK mel scale, 0 Hz to Nyquist, area-normalised."""
    bins = n_fft // 2 + 1
    freqs = torch.linspace(0, cfg.sample_rate / 2, bins, dtype=torch.float64)
    edges_mel = torch.linspace(0, _hz_to_mel(cfg.sample_rate / 2), cfg.n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    filters = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return (filters * (2.0 / (upper - lower))).float()


class LogMel(torch.nn.Module):
    def __init__(self, cfg: StudentConfig, n_fft: int = 1200):
        super().__init__()
        self.hop, self.n_fft = cfg.hop, n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("filters", mel_filterbank(cfg, n_fft), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, S] → log-mel [B, n_mels, S // hop]."""
        spec = torch.stft(audio, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)
        power = spec.real**2 + spec.imag**2
        mel = torch.matmul(self.filters, power[..., : audio.shape[-1] // self.hop])
        return torch.log(torch.clamp(mel, min=1e-7))
