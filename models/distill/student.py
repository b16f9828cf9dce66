"""The student: a duration-driven acoustic model and a frame-rate vocoder, both small convnets.

- ``AcousticStudent``: phone ids → log-durations (per phone) and, given durations, log-mel
  frames. Non-autoregressive (FastSpeech-style length regulator) so a sentence costs one pass.
  The teacher is deterministic, so there is no one-to-many problem to soften with variance
  predictors: the decoder sees each frame's phone encoding plus where in the phone it sits.
- ``VocoderStudent``: log-mel → waveform, Vocos-style. All layers run at the frame rate (80/s),
  the head predicts a complex spectrum per frame and a fixed inverse-DFT basis plus overlap-add
  turns it into samples. That is what makes it an order of magnitude cheaper than the teacher's
  MB-MelGAN, whose layers run at the sample rate. The inverse DFT is written as a matmul and
  the overlap-add as shifted adds so the ONNX graph uses only MatMul/Pad/Slice/Add.

Every op is convolutional over time with a bounded receptive field, which lets the edge
engine vocode a long utterance in overlapping chunks and stream the first one early.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class StudentConfig:
    n_symbols: int = 219
    sample_rate: int = 24000
    hop: int = 300
    n_mels: int = 80
    # acoustic
    phone_dim: int = 160
    phone_layers: int = 4
    frame_dim: int = 160
    frame_layers: int = 4
    # vocoder
    voc_dim: int = 160
    voc_layers: int = 5
    n_fft: int = 1200

    def to_dict(self) -> dict:
        return asdict(self)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (kernel 7) → LayerNorm → pointwise ×2 → GELU → pointwise, residual."""

    def __init__(self, dim: int, kernel: int = 7, expansion: int = 2):
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, dim * expansion)
        self.pw2 = nn.Linear(dim * expansion, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
        y = self.dw(x).transpose(1, 2)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class AcousticStudent(nn.Module):
    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.n_symbols, cfg.phone_dim)
        self.encoder = nn.Sequential(*[ConvNeXtBlock(cfg.phone_dim, kernel=5) for _ in range(cfg.phone_layers)])
        self.duration = nn.Sequential(ConvNeXtBlock(cfg.phone_dim, kernel=3), nn.Conv1d(cfg.phone_dim, 1, 1))
        self.to_frames = nn.Conv1d(cfg.phone_dim + 2, cfg.frame_dim, 1)
        self.decoder = nn.Sequential(*[ConvNeXtBlock(cfg.frame_dim) for _ in range(cfg.frame_layers)])
        self.to_mel = nn.Conv1d(cfg.frame_dim, cfg.n_mels, 1)

    def encode(self, phones: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """phones [B, T] → (encodings [B, C, T], log-durations [B, T])."""
        h = self.encoder(self.embed(phones).transpose(1, 2))
        return h, self.duration(h).squeeze(1)

    def decode(self, frames: torch.Tensor) -> torch.Tensor:
        """Expanded frame features [B, C+2, F] (see ``expand``) → log-mel [B, n_mels, F]."""
        return self.to_mel(self.decoder(self.to_frames(frames)))

    def forward(self, phones: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, log_dur = self.encode(phones)
        return self.decode(expand(h, durations)), log_dur


def expand(h: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """Length regulator: [B, C, T] × integer [B, T] → [B, C+2, F] with F the longest total.

    Two position features ride along: how far through its phone a frame is and the phone's
    log length, so the decoder can shape contours inside a phone. Frames past an utterance's
    end are zero. The edge runtime does the same in numpy (``frame_features``) so the exported
    graphs have no data-dependent shapes.
    """
    ends = torch.cumsum(durations, dim=1)  # [B, T]
    frame_index = torch.arange(int(ends[:, -1].max()), device=h.device).view(1, -1)  # [1, F]
    phone = (ends.unsqueeze(1) <= frame_index.unsqueeze(-1)).sum(-1).clamp(max=h.shape[2] - 1)  # [B, F]
    dur_f = torch.gather(durations, 1, phone).float()
    start_f = torch.gather(ends - durations, 1, phone).float()
    position = (frame_index.float() - start_f + 0.5) / dur_f.clamp(min=1.0)
    valid = (frame_index < ends[:, -1:]).float()
    gathered = torch.gather(h, 2, phone.unsqueeze(1).expand(-1, h.shape[1], -1))
    extra = torch.stack([position, torch.log1p(dur_f)], dim=1)
    return torch.cat([gathered, extra], dim=1) * valid.unsqueeze(1)


class VocoderStudent(nn.Module):
    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        self.bins = cfg.n_fft // 2 + 1
        self.overlap = cfg.n_fft // cfg.hop
        if cfg.n_fft % cfg.hop:
            raise ValueError("n_fft must be a multiple of hop for the shifted-add overlap-add")
        self.inp = nn.Conv1d(cfg.n_mels, cfg.voc_dim, 7, padding=3)
        self.norm = nn.LayerNorm(cfg.voc_dim)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(cfg.voc_dim) for _ in range(cfg.voc_layers)])
        self.head = nn.Linear(cfg.voc_dim, 2 * self.bins)

    def forward(self, mel: torch.Tensor, basis: torch.Tensor | None = None) -> torch.Tensor:
        """log-mel [B, n_mels, F] → waveform [B, F*hop]. ``basis``: ``istft_basis`` (the exported
        graph takes it as an input, so the file holds only weights and nothing is folded at load)."""
        x = self.inp(mel)
        x = self.blocks(self.norm(x.transpose(1, 2)).transpose(1, 2))
        spec = self.head(x.transpose(1, 2))  # [B, F, 2*bins]
        log_mag, phase = spec[..., : self.bins], spec[..., self.bins:]
        mag = torch.exp(log_mag.clamp(max=10.0))  # a full-scale sine needs about e^5.7 here
        basis = istft_basis(self.cfg.n_fft, mel.device) if basis is None else basis
        frames = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=-1) @ basis  # [B, F, n_fft]
        return overlap_add(frames, self.cfg.hop, self.overlap)


def istft_basis(n_fft: int, device: torch.device | None = None) -> torch.Tensor:
    """[2*bins, n_fft]: (real, imag) one-sided spectrum → Hann-windowed time frame (inverse rDFT).

    ``k*n mod n_fft`` is taken in integers first: float32 loses the phase of angles that large.
    The edge runtime builds the same matrix in numpy (``edge_agent.engines.student.istft_basis``).
    """
    bins = n_fft // 2 + 1
    k = torch.arange(bins, device=device).view(-1, 1)
    n = torch.arange(n_fft, device=device).view(1, -1)
    angle = torch.remainder(k * n, n_fft).float() * (2 * math.pi / n_fft)
    weight = torch.ones(bins, 1, device=device) * 2.0
    weight = torch.cat([weight[:1] * 0.5, weight[1:-1], weight[-1:] * (0.5 if n_fft % 2 == 0 else 1.0)])
    window = 0.5 - 0.5 * torch.cos(torch.arange(n_fft, device=device).float() * (2 * math.pi / n_fft))
    real = weight * torch.cos(angle) / n_fft
    imag = -weight * torch.sin(angle) / n_fft
    return torch.cat([real, imag], dim=0) * window


def overlap_add(frames: torch.Tensor, hop: int, overlap: int) -> torch.Tensor:
    """[B, F, overlap*hop] frames centred on their hop → [B, F*hop] samples.

    Frame f covers samples [(f - overlap/2)*hop, (f + overlap/2)*hop); segment s of frame f lands
    in output hop f + s - overlap//2. Shifted adds of the ``overlap`` segments do the sum.
    """
    b, n = frames.shape[0], frames.shape[1]
    segments = frames.reshape(b, n, overlap, hop)
    half = overlap // 2
    out = torch.zeros(b, n + overlap, hop, dtype=frames.dtype, device=frames.device)
    padded = [F.pad(segments[:, :, s], (0, 0, s, overlap - s)) for s in range(overlap)]
    out = sum(padded, out)
    return out[:, half:half + n].reshape(b, n * hop)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
