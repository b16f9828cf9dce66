"""A stand-in of upstream's CosyVoice3 (FunAudioLLM/CosyVoice at ace7c47): its public API, session
handling and streaming, over a compute layer in plain torch with CosyVoice3's published shapes and
random weights. The CosyVoice3 engine is tested here (tests/edge_agent/test_cosyvoice3_*.py) and
measured (benchmarks/cloud.py, scripts/gpu_check.sh) against it: no registry holds upstream's
CosyVoice3 code and no machine here can download its weights.

What follows upstream, read from ``cosyvoice/cli/cosyvoice.py``, ``frontend.py``, ``model.py``:
``AutoModel`` → ``CosyVoice3`` with ``add_zero_shot_spk``, ``inference_zero_shot``,
``inference_cross_lingual``, ``inference_instruct2``; the frontend's ``spk2info`` and model inputs
per mode; ``CosyVoice2Model.tts``: per-session dicts under a lock, the LLM in its own thread, a
polling loop that streams by token hops (the first hop padded to the prompt and waiting for the
flow's 3 look-ahead tokens, each later hop twice the last up to 100, kept on the shared model as
upstream does), clean-up after the loop, not in a ``finally``; ``CosyVoice3Model.token2wav``: the
flow over every token so far, the vocoder over every mel frame so far.

What is a stand-in: the frontend's extractors (text tokens are characters, speech tokens and
features come from the clip's bytes and length, the speaker embedding is ones) and the weights.
The networks have CosyVoice3's dimensions (examples/libritts/cosyvoice3/conf/cosyvoice3.yaml) at
``size="full"``: a Qwen2.5-0.5B-shaped decoder (896 hidden, 24 layers, 14 heads, 2 KV heads, FFN
4864) with a 6561+200 speech-token head, sampling top-k 25; the flow's DiT (22 blocks, dim 1024,
16 heads, FF x2) run for 10 Euler steps with classifier-free guidance (batch 2); a HiFT-sized
vocoder (512 channels, upsampling 8x5x3, kernels 3/7/11 at dilations 1/3/5, an iSTFT of 16 with hop
4, an F0-driven sine source) at 24 kHz. So its figures are the compute cost of the real model,
whatever its weights. ``size="small"`` keeps the structure at toy widths for tests on a CPU.
Random weights never stop speaking, so the LLM's tokens are capped by the text's length.

The size and device come from the model directory's ``cosyvoice3.yaml`` (``standin_size:``,
``standin_device:``), since the engine passes upstream's ``AutoModel`` only the directory and fp16.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid as uuid_module
import weakref
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (torch's convention)
from torch import nn

SAMPLE_RATE = 24000
SPEECH_TOKENS = 6561  # FSQ codebook; the LLM's head has 200 more (sos, eos, task id, fill...)
TOKEN_MEL_RATIO, MEL_HOP = 2, 480  # 25 tokens/s -> 50 mel frames/s -> 24 kHz
SAMPLES_PER_TOKEN = TOKEN_MEL_RATIO * MEL_HOP
PRE_LOOKAHEAD = 3
TOKENS_PER_CHAR = 5  # the cap on random weights: about 0.2 s of speech per character
MAX_TOKENS = 500  # 20 s
ENDOFPROMPT = "<|endofprompt|>"
# upstream's defaults for what a mode leaves out (``CosyVoice2Model.tts``)
NO_TOKENS, NO_EMBEDDING, NO_FEAT = torch.zeros(1, 0, dtype=torch.int32), torch.zeros(0, 192), torch.zeros(1, 0, 80)


@dataclass(frozen=True)
class Dims:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    text_vocab: int
    lookahead_channels: int
    dit_dim: int
    dit_depth: int
    dit_heads: int
    hift_channels: int
    euler_steps: int = 10
    cfg_rate: float = 0.7


SIZES = {
    "full": Dims(hidden=896, layers=24, heads=14, kv_heads=2, ffn=4864, text_vocab=151936, lookahead_channels=1024,
                 dit_dim=1024, dit_depth=22, dit_heads=16, hift_channels=512),
    "small": Dims(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, text_vocab=4096, lookahead_channels=32,
                  dit_dim=64, dit_depth=2, dit_heads=4, hift_channels=32),
}


# ----------------------------------------------------------------------------- the compute


def rotary(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    freqs = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * freqs[None, :]
    angles = torch.cat([angles, angles], -1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, -1)
    return (x * cos + torch.cat([-x2, x1], -1) * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, qkv_bias: bool):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.qkv = nn.Linear(dim, (heads + 2 * kv_heads) * self.head_dim, bias=qkv_bias)
        self.out = nn.Linear(heads * self.head_dim, dim, bias=False)

    def forward(self, x, rot=None, cache: list | None = None, causal: bool = False):
        b, t, _ = x.shape
        hd = self.head_dim
        q, k, v = self.qkv(x).split([self.heads * hd, self.kv_heads * hd, self.kv_heads * hd], -1)
        q, k, v = (y.view(b, t, -1, hd).transpose(1, 2) for y in (q, k, v))
        if rot is not None:
            q, k = rotate(q, *rot), rotate(k, *rot)
        if cache is not None:  # the decoder's KV cache, grown a step at a time
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=self.heads != self.kv_heads)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


class DecoderLayer(nn.Module):
    """A Qwen2 layer: RMSNorm, grouped-query attention with rotary positions, SwiGLU."""

    def __init__(self, d: Dims):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(d.hidden, eps=1e-6), nn.RMSNorm(d.hidden, eps=1e-6)
        self.attn = Attention(d.hidden, d.heads, d.kv_heads, qkv_bias=True)
        self.gate_up = nn.Linear(d.hidden, 2 * d.ffn, bias=False)
        self.down = nn.Linear(d.ffn, d.hidden, bias=False)

    def forward(self, x, rot, cache, causal):
        x = x + self.attn(self.norm1(x), rot, cache, causal)
        gate, up = self.gate_up(self.norm2(x)).chunk(2, -1)
        return x + self.down(F.silu(gate) * up)


class SpeechLM(nn.Module):
    """CosyVoice3LM: a Qwen2 decoder reading [sos, text, task id, prompt speech] and writing speech tokens."""

    def __init__(self, d: Dims):
        super().__init__()
        self.head_dim = d.hidden // d.heads
        self.text_embedding = nn.Embedding(d.text_vocab, d.hidden)
        self.speech_embedding = nn.Embedding(SPEECH_TOKENS + 200, d.hidden)
        self.layers = nn.ModuleList(DecoderLayer(d) for _ in range(d.layers))
        self.norm = nn.RMSNorm(d.hidden, eps=1e-6)
        self.decoder = nn.Linear(d.hidden, SPEECH_TOKENS + 200, bias=False)

    def _step(self, x, caches, start: int) -> torch.Tensor:
        rot = rotary(torch.arange(start, start + x.shape[1], device=x.device), self.head_dim, 1e6)
        for layer, cache in zip(self.layers, caches, strict=True):
            x = layer(x, rot, cache, causal=x.shape[1] > 1)
        return self.decoder(self.norm(x[:, -1]))

    @torch.inference_mode()
    def inference(self, text: torch.Tensor, prompt_speech: torch.Tensor, count: int) -> Iterator[int]:
        device = self.decoder.weight.device
        special = torch.tensor([[SPEECH_TOKENS, SPEECH_TOKENS + 2]], device=device)  # sos, task id
        embedded = self.speech_embedding(special)
        text = text.to(device).long() % self.text_embedding.num_embeddings  # characters here, BPE upstream
        x = torch.cat([embedded[:, :1], self.text_embedding(text), embedded[:, 1:],
                       self.speech_embedding(prompt_speech.to(device).long())], 1)
        caches: list[list] = [[] for _ in self.layers]
        position = 0
        for _ in range(count):
            logits = self._step(x, caches, position)
            position += x.shape[1]
            top = torch.topk(logits[:, :SPEECH_TOKENS].float(), 25)  # upstream's ras_sampling: top-k 25
            token = top.indices.gather(1, torch.multinomial(top.values.softmax(-1), 1))
            yield int(token)  # one device sync a token, as upstream's generator
            x = self.speech_embedding(token)


def timestep_embedding(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    freqs = torch.exp(-math.log(10000) * torch.arange(dim // 2, device=t.device) / (dim // 2))
    angles = 1000 * t[:, None].float() * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], -1)


class DiTBlock(nn.Module):
    """Adaptive layer norm from the time step, self-attention, a GELU feed-forward (F5-TTS's DiT)."""

    def __init__(self, dim: int, heads: int, ff_mult: int = 2):
        super().__init__()
        self.modulation = nn.Linear(dim, 6 * dim)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, heads, qkv_bias=True)
        self.ff = nn.Sequential(nn.Linear(dim, dim * ff_mult), nn.GELU(approximate="tanh"),
                                nn.Linear(dim * ff_mult, dim))

    def forward(self, x, t, rot):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(t))[:, None].chunk(6, -1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, rot)
        return x + gate2 * self.ff(self.norm2(x) * (1 + scale2) + shift2)


class Flow(nn.Module):
    """CausalMaskedDiffWithDiT: token embedding, a look-ahead conv, x2 upsampling to mel frames, then
    flow matching with a DiT estimator, Euler steps on a cosine schedule, classifier-free guidance."""

    def __init__(self, d: Dims):
        super().__init__()
        self.d = d
        self.input_embedding = nn.Embedding(SPEECH_TOKENS, 80)
        self.lookahead1 = nn.Conv1d(80, d.lookahead_channels, PRE_LOOKAHEAD + 1)
        self.lookahead2 = nn.Conv1d(d.lookahead_channels, 80, 3)
        self.spk_affine = nn.Linear(192, 80)
        self.time = nn.Sequential(nn.Linear(256, d.dit_dim), nn.SiLU(), nn.Linear(d.dit_dim, d.dit_dim))
        self.input = nn.Linear(4 * 80, d.dit_dim)  # noisy mel, mu, speaker, prompt condition
        self.blocks = nn.ModuleList(DiTBlock(d.dit_dim, d.dit_heads) for _ in range(d.dit_depth))
        self.norm_out = nn.LayerNorm(d.dit_dim, eps=1e-6)
        self.proj_out = nn.Linear(d.dit_dim, 80)

    def _mu(self, tokens: torch.Tensor) -> torch.Tensor:
        embedded = self.input_embedding(tokens.long().clamp(0, SPEECH_TOKENS - 1)).transpose(1, 2)
        h = F.leaky_relu(self.lookahead1(F.pad(embedded, (0, PRE_LOOKAHEAD))))  # sees 3 tokens ahead
        h = embedded + self.lookahead2(F.pad(h, (2, 0)))
        return h.transpose(1, 2).repeat_interleave(TOKEN_MEL_RATIO, 1)

    def _estimate(self, x, mu, spk, cond, t):
        h = self.input(torch.cat([x, mu, spk[:, None].expand(-1, x.shape[1], -1), cond], -1))
        temb = self.time(timestep_embedding(t.expand(x.shape[0]), 256))
        rot = rotary(torch.arange(x.shape[1], device=x.device), self.d.dit_dim // self.d.dit_heads, 10000.0)
        for block in self.blocks:
            h = block(h, temb, rot)
        return self.proj_out(self.norm_out(h))

    @torch.inference_mode()
    def inference(self, token, prompt_token, prompt_feat, embedding, finalize: bool) -> torch.Tensor:
        """Mel [1, 80, frames] for ``token`` (all the job's tokens so far); without ``finalize`` the
        last 3 tokens are look-ahead only."""
        device = self.proj_out.weight.device
        dtype = self.proj_out.weight.dtype
        mu = self._mu(torch.cat([prompt_token, token], 1).to(device))
        frames, prompt_frames = mu.shape[1], prompt_feat.shape[1]
        cond = torch.zeros(1, frames, 80, device=device, dtype=mu.dtype)
        cond[:, :prompt_frames] = prompt_feat[:, :frames].to(device)
        spk = self.spk_affine(F.normalize(embedding.to(device, dtype).reshape(1, -1), dim=1) if embedding.numel()
                              else torch.zeros(1, 192, device=device, dtype=dtype))
        x = torch.randn(1, frames, 80, device=device, dtype=mu.dtype)
        steps = 1 - torch.cos(torch.linspace(0, 1, self.d.euler_steps + 1, device=device) * math.pi / 2)
        for t, dt in zip(steps[:-1], steps.diff(), strict=True):
            v = self._estimate(torch.cat([x, x]), torch.cat([mu, torch.zeros_like(mu)]),
                               torch.cat([spk, torch.zeros_like(spk)]), torch.cat([cond, torch.zeros_like(cond)]), t)
            x = x + dt * ((1 + self.d.cfg_rate) * v[:1] - self.d.cfg_rate * v[1:])
        end = frames if finalize else frames - PRE_LOOKAHEAD * TOKEN_MEL_RATIO
        return x[:, prompt_frames:end].transpose(1, 2)


class ResBlock(nn.Module):
    """HiFi-GAN's resblock: for each dilation a dilated conv and a plain one, residual."""

    def __init__(self, channels: int, kernel: int, dilations=(1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
                                    for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2)
                                    for _ in dilations)

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, 0.1)), 0.1))
        return x


class HiFT(nn.Module):
    """CausalHiFTGenerator's shape: an F0 predictor driving a harmonic sine source, its STFT fused
    into each of three upsampling stages (x8, x5, x3) with resblocks, then an iSTFT (16, hop 4)."""

    RATES, KERNELS, N_FFT, HOP = (8, 5, 3), (16, 11, 7), 16, 4

    def __init__(self, d: Dims):
        super().__init__()
        c = d.hift_channels
        self.f0 = nn.Sequential(*(m for i in range(5) for m in (nn.Conv1d(80 if i == 0 else c, c, 3, padding=1),
                                                                   nn.ELU())), nn.Conv1d(c, 1, 1))
        self.harmonics = nn.Linear(9, 1)  # the fundamental and 8 harmonics
        self.conv_pre = nn.Conv1d(80, c, 5, padding=2)
        widths = [c // 2 ** (i + 1) for i in range(3)]
        self.ups = nn.ModuleList(nn.ConvTranspose1d(c // 2 ** i, widths[i], k, r, padding=(k - r) // 2)
                                 for i, (r, k) in enumerate(zip(self.RATES, self.KERNELS, strict=True)))
        # the source's STFT frames (120 a mel frame) brought to each stage's rate (8, 40, 120 a mel frame)
        self.source_downs = nn.ModuleList([nn.Conv1d(self.N_FFT + 2, widths[0], 30, 15, padding=7),
                                           nn.Conv1d(self.N_FFT + 2, widths[1], 6, 3, padding=1),
                                           nn.Conv1d(self.N_FFT + 2, widths[2], 1)])
        self.source_blocks = nn.ModuleList(ResBlock(w, k) for w, k in zip(widths, (7, 7, 11), strict=True))
        self.resblocks = nn.ModuleList(ResBlock(w, k) for w in widths for k in (3, 7, 11))
        self.conv_post = nn.Conv1d(widths[-1], self.N_FFT + 2, 7, padding=3)
        self.register_buffer("window", torch.hann_window(self.N_FFT), persistent=False)

    def _source(self, mel):
        f0 = F.relu(self.f0(mel)) * 50 + 100  # Hz, one per mel frame
        f0 = F.interpolate(f0, scale_factor=MEL_HOP, mode="nearest").transpose(1, 2)  # [1, n, 1]
        phase = 2 * math.pi * torch.cumsum(f0.float() / SAMPLE_RATE, 1) % (2 * math.pi)
        waves = 0.1 * torch.sin(phase * torch.arange(1, 10, device=mel.device))
        return torch.tanh(self.harmonics(waves.to(mel.dtype))).transpose(1, 2)  # [1, 1, n]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        source = self._source(mel)[:, 0].float()
        spec = torch.stft(source, self.N_FFT, self.HOP, window=self.window, return_complex=True)
        spec = torch.cat([spec.real, spec.imag], 1).to(mel.dtype)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, 0.1))
            s = self.source_blocks[i](self.source_downs[i](spec))
            n = min(x.shape[-1], s.shape[-1])
            x = x[..., :n] + s[..., :n]
            x = sum(block(x) for block in self.resblocks[3 * i:3 * i + 3]) / 3
        x = self.conv_post(F.leaky_relu(x)).float()
        magnitude = torch.exp(x[:, :self.N_FFT // 2 + 1]).clamp(max=1e2)
        phase = torch.sin(x[:, self.N_FFT // 2 + 1:])
        speech = torch.istft(torch.polar(magnitude, phase), self.N_FFT, self.HOP, window=self.window,
                             length=mel.shape[-1] * MEL_HOP)
        return speech.clamp(-0.99, 0.99)  # upstream's audio_limit


class CosyVoice3ComputeStandIn(nn.Module):
    """The three networks of CosyVoice3 with random weights, on one device."""

    def __init__(self, size: str = "small", device: str | torch.device = "cpu", seed: int = 1986):
        super().__init__()
        self.size, self.dims = size, SIZES[size]
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]), self.device:  # made where it runs: a full CPU init takes long
            torch.manual_seed(seed)
            self.llm, self.flow, self.hift = SpeechLM(self.dims), Flow(self.dims), HiFT(self.dims)
            with torch.no_grad():  # random weights at a level that gives audible, unclipped noise
                self.hift.conv_post.weight.mul_(0.1)
                self.hift.conv_post.bias.fill_(2.5)
        self.eval()

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        return self.hift(mel)


# ----------------------------------------------------------------------------- upstream's API


class UpstreamFrontEndStandIn:
    """Upstream's ``CosyVoiceFrontEnd``: the frontend_* methods as upstream writes them; the
    extractors (tokenizer, speech tokenizer, CAM++ embedding, mel features) are stand-ins: text
    tokens are characters, the clip gives 25 speech tokens and 50 feature frames a second."""

    def __init__(self) -> None:
        self.spk2info: dict[str, dict] = {}
        self.embeddings: list[str] = []  # the clips whose speaker embedding was extracted

    def _extract_text_token(self, text):
        token = torch.tensor([[ord(c) for c in text]], dtype=torch.int32)
        return token, torch.tensor([token.shape[1]], dtype=torch.int32)

    def _extract_speech_token(self, prompt_wav):
        pcm = Path(prompt_wav).read_bytes()[44:]  # 24 kHz mono 16-bit, as the control plane stores clips
        count = max(1, len(pcm) // 2 // SAMPLES_PER_TOKEN)
        token = torch.tensor([[pcm[(i * 97) % len(pcm)] * 25 for i in range(count)]], dtype=torch.int32)
        return token, torch.tensor([count], dtype=torch.int32)

    def _extract_spk_embedding(self, prompt_wav):
        self.embeddings.append(str(prompt_wav))
        return torch.ones(1, 192)

    def _extract_speech_feat(self, prompt_wav):
        frames = self._extract_speech_token(prompt_wav)[0].shape[1] * TOKEN_MEL_RATIO
        feat = torch.zeros(1, frames, 80)
        return feat, torch.tensor([frames], dtype=torch.int32)

    def text_normalize(self, text, split=True, text_frontend=True):
        """Upstream's rules without its normalisers: ssml-like text and empty text pass as they are,
        other text is split into sentences."""
        if '<|' in text and '|>' in text:
            text_frontend = False
        if text_frontend is False or text == '':
            return [text] if split is True else text
        text = text.strip()
        texts = [s for s in re.split(r'(?<=[。！？.!?])', text) if s.strip()]
        return texts if split is True else text

    def frontend_zero_shot(self, tts_text, prompt_text, prompt_wav, resample_rate, zero_shot_spk_id):
        tts_text_token, tts_text_token_len = self._extract_text_token(tts_text)
        if zero_shot_spk_id == '':
            prompt_text_token, prompt_text_token_len = self._extract_text_token(prompt_text)
            speech_feat, speech_feat_len = self._extract_speech_feat(prompt_wav)
            speech_token, speech_token_len = self._extract_speech_token(prompt_wav)
            if resample_rate == 24000:
                token_len = min(int(speech_feat.shape[1] / 2), speech_token.shape[1])
                speech_feat, speech_feat_len[:] = speech_feat[:, :2 * token_len], 2 * token_len
                speech_token, speech_token_len[:] = speech_token[:, :token_len], token_len
            embedding = self._extract_spk_embedding(prompt_wav)
            model_input = {'prompt_text': prompt_text_token, 'prompt_text_len': prompt_text_token_len,
                           'llm_prompt_speech_token': speech_token, 'llm_prompt_speech_token_len': speech_token_len,
                           'flow_prompt_speech_token': speech_token, 'flow_prompt_speech_token_len': speech_token_len,
                           'prompt_speech_feat': speech_feat, 'prompt_speech_feat_len': speech_feat_len,
                           'llm_embedding': embedding, 'flow_embedding': embedding}
        else:
            model_input = {**self.spk2info[zero_shot_spk_id]}
        model_input['text'] = tts_text_token
        model_input['text_len'] = tts_text_token_len
        return model_input

    def frontend_cross_lingual(self, tts_text, prompt_wav, resample_rate, zero_shot_spk_id):
        model_input = self.frontend_zero_shot(tts_text, '', prompt_wav, resample_rate, zero_shot_spk_id)
        del model_input['prompt_text']
        del model_input['prompt_text_len']
        del model_input['llm_prompt_speech_token']
        del model_input['llm_prompt_speech_token_len']
        return model_input

    def frontend_instruct2(self, tts_text, instruct_text, prompt_wav, resample_rate, zero_shot_spk_id):
        model_input = self.frontend_zero_shot(tts_text, instruct_text, prompt_wav, resample_rate, zero_shot_spk_id)
        del model_input['llm_prompt_speech_token']
        del model_input['llm_prompt_speech_token_len']
        return model_input


def spoken_chars(text: torch.Tensor) -> int:
    """The characters to speak: the text after the system prompt where one leads it."""
    return len("".join(chr(int(t)) for t in text.reshape(-1)).rsplit(ENDOFPROMPT, 1)[-1])


class UpstreamModelStandIn:
    """Upstream's ``CosyVoice3Model`` (``CosyVoice2Model.tts``, ``CosyVoice3Model.token2wav``) over
    the compute stand-in. ``llm_gate`` (tests) holds the LLM once its first hop is out: a stream
    in the middle."""

    def __init__(self, compute: CosyVoice3ComputeStandIn, fp16: bool = False) -> None:
        self.compute, self.fp16, self.device = compute, fp16, compute.device
        self.token_hop_len = 25
        self.token_max_hop_len = 4 * self.token_hop_len
        self.stream_scale_factor = 2
        self.lock = threading.Lock()
        self.tts_speech_token_dict: dict[str, list[int]] = {}
        self.llm_end_dict: dict[str, bool] = {}
        self.hift_cache_dict: dict[str, dict | None] = {}
        self.llm_gate = threading.Event()
        self.llm_gate.set()
        self.threads: list[threading.Thread] = []
        self.sessions: list[weakref.ref] = []  # tts generators, weakly: a strong reference would keep them open
        self.inputs: list[dict] = []

    def _autocast(self):
        return torch.autocast(self.device.type, torch.float16) if self.fp16 else nullcontext()

    def llm_job(self, text, prompt_text, llm_prompt_speech_token, llm_embedding, uuid):
        count = min(MAX_TOKENS, TOKENS_PER_CHAR * spoken_chars(text))
        first_hop = self.token_hop_len + PRE_LOOKAHEAD
        with self._autocast():
            for i, token in enumerate(self.compute.llm.inference(torch.cat([prompt_text, text], 1),
                                                                 llm_prompt_speech_token, count)):
                if i == first_hop:
                    self.llm_gate.wait()
                self.tts_speech_token_dict[uuid].append(token)
        self.llm_end_dict[uuid] = True

    def token2wav(self, token, prompt_token, prompt_feat, embedding, token_offset, uuid, stream=False, finalize=False):
        with self._autocast():
            tts_mel = self.compute.flow.inference(token, prompt_token, prompt_feat, embedding, finalize)
            tts_mel = tts_mel[:, :, token_offset * TOKEN_MEL_RATIO:]
            if self.hift_cache_dict[uuid] is not None:
                tts_mel = torch.concat([self.hift_cache_dict[uuid]['mel'], tts_mel], dim=2)
                self.hift_cache_dict[uuid]['mel'] = tts_mel
            else:
                self.hift_cache_dict[uuid] = {'mel': tts_mel, 'speech_offset': 0}
            tts_speech = self.compute.vocode(tts_mel)
            tts_speech = tts_speech[:, self.hift_cache_dict[uuid]['speech_offset']:]
            self.hift_cache_dict[uuid]['speech_offset'] += tts_speech.shape[1]
        return tts_speech

    def tts(self, text=NO_TOKENS, flow_embedding=NO_EMBEDDING, llm_embedding=NO_EMBEDDING, prompt_text=NO_TOKENS,
            llm_prompt_speech_token=NO_TOKENS, flow_prompt_speech_token=NO_TOKENS, prompt_speech_feat=NO_FEAT,
            source_speech_token=NO_TOKENS, stream=False, speed=1.0, **kwargs):
        self.inputs.append({'prompt_text': prompt_text, 'llm_prompt_speech_token': llm_prompt_speech_token,
                            'text': text, 'stream': stream})
        generator = self._tts(text, flow_embedding, llm_embedding, prompt_text, llm_prompt_speech_token,
                              flow_prompt_speech_token, prompt_speech_feat, stream)
        self.sessions.append(weakref.ref(generator))
        return generator

    def _tts(self, text, flow_embedding, llm_embedding, prompt_text, llm_prompt_speech_token,
             flow_prompt_speech_token, prompt_speech_feat, stream):
        this_uuid = str(uuid_module.uuid1())
        with self.lock:
            self.tts_speech_token_dict[this_uuid], self.llm_end_dict[this_uuid] = [], False
            self.hift_cache_dict[this_uuid] = None
        p = threading.Thread(target=self.llm_job, args=(text, prompt_text, llm_prompt_speech_token, llm_embedding,
                                                        this_uuid))
        self.threads.append(p)
        p.start()
        flow_args = (flow_prompt_speech_token, prompt_speech_feat, flow_embedding)
        token_offset = 0
        if stream is True:
            prompt_token_pad = int(np.ceil(flow_prompt_speech_token.shape[1] / self.token_hop_len) * self.token_hop_len
                                   - flow_prompt_speech_token.shape[1])
            while True:
                time.sleep(0.1)  # upstream's poll
                this_token_hop_len = self.token_hop_len + prompt_token_pad if token_offset == 0 else self.token_hop_len
                tokens = self.tts_speech_token_dict[this_uuid]
                if len(tokens) - token_offset >= this_token_hop_len + PRE_LOOKAHEAD:
                    this_tts_speech_token = torch.tensor(tokens[:token_offset + this_token_hop_len + PRE_LOOKAHEAD])
                    this_tts_speech = self.token2wav(this_tts_speech_token[None], *flow_args, token_offset, this_uuid,
                                                     stream=stream, finalize=False)
                    token_offset += this_token_hop_len
                    # upstream keeps the growing hop on the model, shared by every later session
                    self.token_hop_len = min(self.token_max_hop_len, self.token_hop_len * self.stream_scale_factor)
                    yield {'tts_speech': this_tts_speech.cpu()}
                left = len(self.tts_speech_token_dict[this_uuid]) - token_offset
                if self.llm_end_dict[this_uuid] is True and left < this_token_hop_len + PRE_LOOKAHEAD:
                    break
        p.join()
        this_tts_speech_token = torch.tensor(self.tts_speech_token_dict[this_uuid])[None]
        yield {'tts_speech': self.token2wav(this_tts_speech_token, *flow_args, token_offset, this_uuid,
                                            finalize=True).cpu()}
        with self.lock:
            self.tts_speech_token_dict.pop(this_uuid)
            self.llm_end_dict.pop(this_uuid)
            self.hift_cache_dict.pop(this_uuid)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.current_stream().synchronize()


def standin_settings(model_dir) -> dict[str, str]:
    """``standin_size`` and ``standin_device`` from the directory's cosyvoice3.yaml."""
    text = Path(model_dir, 'cosyvoice3.yaml').read_text()
    return dict(re.findall(r'^(standin_\w+):\s*(\S+)', text, re.MULTILINE))


class UpstreamCosyVoice3StandIn:
    """Upstream's ``CosyVoice3`` public surface as written in ``cosyvoice/cli/cosyvoice.py``: the
    constructor's arguments (fp16 turned off where there is no CUDA, as upstream does),
    ``add_zero_shot_spk``, ``inference_zero_shot``, ``inference_cross_lingual``, ``inference_instruct2``."""

    def __init__(self, model_dir, load_trt=False, load_vllm=False, fp16=False, trt_concurrent=1):
        self.model_dir = model_dir
        self.fp16 = fp16  # as upstream: the setting asked for, even where the model runs without it
        if not Path(model_dir, 'cosyvoice3.yaml').exists():
            raise ValueError(f'{model_dir}/cosyvoice3.yaml not found!')
        settings = standin_settings(model_dir)
        device = settings.get('standin_device') or ('cuda' if torch.cuda.is_available() else 'cpu')
        self.frontend = UpstreamFrontEndStandIn()
        self.sample_rate = SAMPLE_RATE
        if not device.startswith('cuda') and (load_trt is True or fp16 is True):
            load_trt, fp16 = False, False
        compute = CosyVoice3ComputeStandIn(settings.get('standin_size', 'small'), device)
        self.model = UpstreamModelStandIn(compute, fp16)

    def add_zero_shot_spk(self, prompt_text, prompt_wav, zero_shot_spk_id):
        assert zero_shot_spk_id != '', 'do not use empty zero_shot_spk_id'
        model_input = self.frontend.frontend_zero_shot('', prompt_text, prompt_wav, self.sample_rate, '')
        del model_input['text']
        del model_input['text_len']
        self.frontend.spk2info[zero_shot_spk_id] = model_input
        return True

    def inference_zero_shot(self, tts_text, prompt_text, prompt_wav, zero_shot_spk_id='', stream=False, speed=1.0,
                            text_frontend=True):
        prompt_text = self.frontend.text_normalize(prompt_text, split=False, text_frontend=text_frontend)
        for i in self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend):
            model_input = self.frontend.frontend_zero_shot(i, prompt_text, prompt_wav, self.sample_rate,
                                                           zero_shot_spk_id)
            for model_output in self.model.tts(**model_input, stream=stream, speed=speed):  # noqa: UP028 (upstream's)
                yield model_output

    def inference_cross_lingual(self, tts_text, prompt_wav, zero_shot_spk_id='', stream=False, speed=1.0,
                                text_frontend=True):
        for i in self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend):
            model_input = self.frontend.frontend_cross_lingual(i, prompt_wav, self.sample_rate, zero_shot_spk_id)
            for model_output in self.model.tts(**model_input, stream=stream, speed=speed):  # noqa: UP028 (upstream's)
                yield model_output

    def inference_instruct2(self, tts_text, instruct_text, prompt_wav, zero_shot_spk_id='', stream=False, speed=1.0,
                            text_frontend=True):
        for i in self.frontend.text_normalize(tts_text, split=True, text_frontend=text_frontend):
            model_input = self.frontend.frontend_instruct2(i, instruct_text, prompt_wav, self.sample_rate,
                                                           zero_shot_spk_id)
            for model_output in self.model.tts(**model_input, stream=stream, speed=speed):  # noqa: UP028 (upstream's)
                yield model_output


def AutoModel(**kwargs):  # noqa: N802 (upstream's name)
    """Upstream's ``AutoModel``, for the CosyVoice3 case."""
    if Path(kwargs['model_dir'], 'cosyvoice3.yaml').exists():
        return UpstreamCosyVoice3StandIn(**kwargs)
    raise TypeError('No valid model type found!')


def upstream_package(root: Path) -> Path:
    """A ``cosyvoice`` package under ``root`` whose ``cli.cosyvoice.AutoModel`` is this stand-in's,
    for agent processes (put ``root`` on their PYTHONPATH)."""
    cli = root / "cosyvoice" / "cli"
    cli.mkdir(parents=True, exist_ok=True)
    (root / "cosyvoice" / "__init__.py").write_text("")
    (cli / "__init__.py").write_text("")
    (cli / "cosyvoice.py").write_text("from benchmarks.cosyvoice3_standin import AutoModel  # noqa: F401\n")
    return root


def weights_dir(root: Path, size: str = "small", device: str | None = None) -> Path:
    """A model directory the stand-in accepts: its cosyvoice3.yaml names the size (and device)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["# a stand-in's: upstream's own yaml is not read", f"standin_size: {size}"]
    if device:
        lines.append(f"standin_device: {device}")
    (root / "cosyvoice3.yaml").write_text("\n".join(lines) + "\n")
    return root
