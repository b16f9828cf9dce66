"""Objective comparison of a student's audio with its teacher's on the same text.

Inputs are float32 mono arrays in [-1, 1] at one sample rate (typically 24 kHz). Metrics:

- ``mcd_dtw``: mel-cepstral distortion (dB). WORLD analysis (harvest F0, CheapTrick envelope,
  5 ms frames) → order-24 mel-cepstrum (pysptk ``sp2mc``, all-pass ``alpha`` for the rate), c0
  dropped so loudness does not count. The two sequences are aligned by DTW on the euclidean
  distance of their mcep vectors over *all* frames (the path stays anchored at both ends), and
  the mean is taken over aligned pairs where at least one frame is not silence (more than
  ``SILENCE_DB`` below its clip's loudest frame): silence-on-silence pairs would pull MCD down.
  The envelope is floored ``SPECTRAL_FLOOR_DB`` below the clip's strongest bin so gain alone
  never changes MCD (an empty band above a vocoder's cutoff otherwise would).
- ``f0_rmse``: harvest F0 on the same DTW path, RMSE in Hz and cents over pairs voiced in both,
  and the voicing-decision error rate over the same non-silent pairs as MCD.
- ``speaker_similarity``: cosine of resemblyzer (GE2E) embeddings, computed on 16 kHz audio.

pyworld, pysptk and resemblyzer are imported on first use, so this module imports without them.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

FRAME_PERIOD_MS = 5.0
F0_RANGE = (71.0, 800.0)  # WORLD's defaults: wide enough for both sexes; narrow it per speaker
MCEP_ORDER = 24
SILENCE_DB = 40.0
# CheapTrick leaves bins without energy (above a band-limited vocoder's or resampler's cutoff)
# at an absolute ~1e-16 floor; that floor sits at a level-dependent distance from the speech, so
# c1.. would change with gain. Clamping at a floor relative to the clip's strongest bin makes the
# mcep, and so MCD, independent of loudness.
SPECTRAL_FLOOR_DB = 80.0
SPEAKER_SR = 16000
_MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)  # (10/ln10)*sqrt(2*sum d^2) = this * |d|
_MIN_TRIMMED_S = 0.5  # below this, resemblyzer's VAD trimming removed the speech: embed untrimmed


@dataclass(frozen=True)
class Analysis:
    """WORLD features of one clip, one row per 5 ms frame."""

    f0: np.ndarray  # Hz, 0 where unvoiced
    mcep: np.ndarray  # (frames, MCEP_ORDER): c1..c24
    active: np.ndarray  # bool: not silence


@dataclass(frozen=True)
class Alignment:
    """DTW path between two analyses: frame ``ref_idx[k]`` of ref faces ``syn_idx[k]`` of syn."""

    ref_idx: np.ndarray
    syn_idx: np.ndarray
    distance: np.ndarray  # euclidean mcep distance of each aligned pair
    active: np.ndarray  # pairs where either frame is not silence


def _quiet_import(name: str) -> Any:
    # pyworld 0.3.5 and webrtcvad import pkg_resources; resemblyzer uses scipy.ndimage.morphology:
    # their deprecation warnings say nothing about our code.
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(name)


def _signal(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as contiguous float64 (what WORLD wants), after checking it is a usable clip."""
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty mono 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has NaN or infinite samples")
    return arr


@lru_cache(maxsize=8)
def _mcep_alpha(sr: int) -> float:
    return float(_quiet_import("pysptk").util.mcepalpha(sr))


def analyze(x: np.ndarray, sr: int, name: str = "signal", f0_range: tuple[float, float] = F0_RANGE) -> Analysis:
    """Harvest F0 (searched within ``f0_range`` Hz), CheapTrick envelope → mcep (c0 dropped), silence mask."""
    pw = _quiet_import("pyworld")
    pysptk = _quiet_import("pysptk")
    sig = _signal(x, name)
    f0, times = pw.harvest(sig, sr, f0_floor=f0_range[0], f0_ceil=f0_range[1], frame_period=FRAME_PERIOD_MS)
    sp = pw.cheaptrick(sig, f0, times, sr)
    sp = np.maximum(sp, sp.max() * 10.0 ** (-SPECTRAL_FLOOR_DB / 10.0))
    mcep = pysptk.sp2mc(sp, order=MCEP_ORDER, alpha=_mcep_alpha(sr))
    power_db = 10.0 * np.log10(np.mean(sp, axis=1) + 1e-30)
    active = power_db > power_db.max() - SILENCE_DB
    return Analysis(f0=f0, mcep=np.ascontiguousarray(mcep[:, 1:]), active=active)


def _pairwise_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _accumulate(cost: np.ndarray) -> np.ndarray:
    """DTW accumulated cost, steps (1,0), (0,1), (1,1), each row in one vectorised pass.

    Within a row D[i,j] = min(t[j], D[i,j-1] + c[i,j]) with t[j] = c[i,j] + min(D[i-1,j], D[i-1,j-1]),
    which unrolls to D[i,j] = S[j] + min_{k<=j}(t[k] - S[k]) for S the row's cumulative cost.
    """
    n, m = cost.shape
    acc = np.empty((n, m))
    acc[0] = np.cumsum(cost[0])
    for i in range(1, n):
        prev = acc[i - 1]
        best_above = np.minimum(prev, np.concatenate(([np.inf], prev[:-1])))
        through = cost[i] + best_above
        running = np.cumsum(cost[i])
        acc[i] = running + np.minimum.accumulate(through - running)
    return acc


def _backtrack(acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest path from the end back to (0, 0); ties go to the diagonal step."""
    i, j = acc.shape[0] - 1, acc.shape[1] - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            steps = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
            i, j = min(steps, key=lambda s: acc[s])  # min keeps the first (diagonal) on ties
        path.append((i, j))
    idx = np.asarray(path[::-1])
    return idx[:, 0], idx[:, 1]


def dtw_path(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DTW alignment of two (frames, dims) sequences on euclidean distance: (a indices, b indices)."""
    return _backtrack(_accumulate(_pairwise_distance(a, b)))


def align(ref: Analysis, syn: Analysis) -> Alignment:
    dist = _pairwise_distance(ref.mcep, syn.mcep)
    ri, si = _backtrack(_accumulate(dist))
    active = ref.active[ri] | syn.active[si]
    if not active.any():  # both clips all "silence" (e.g. constant): score every pair
        active = np.ones_like(active)
    return Alignment(ref_idx=ri, syn_idx=si, distance=dist[ri, si], active=active)


def _mcd(al: Alignment) -> float:
    return float(_MCD_SCALE * al.distance[al.active].mean())


def _f0_stats(ref: Analysis, syn: Analysis, al: Alignment) -> dict[str, float]:
    f_ref, f_syn = ref.f0[al.ref_idx][al.active], syn.f0[al.syn_idx][al.active]
    v_ref, v_syn = f_ref > 0, f_syn > 0
    both = v_ref & v_syn
    vuv = float(np.mean(v_ref != v_syn))
    if not both.any():  # nothing to compare pitch on (e.g. whispered or broken audio)
        return {"rmse_hz": math.nan, "rmse_cents": math.nan, "vuv_error": vuv}
    diff_hz = f_syn[both] - f_ref[both]
    diff_cents = 1200.0 * np.log2(f_syn[both] / f_ref[both])
    return {"rmse_hz": float(np.sqrt(np.mean(diff_hz**2))),
            "rmse_cents": float(np.sqrt(np.mean(diff_cents**2))), "vuv_error": vuv}


def _analyze_pair(ref: np.ndarray, syn: np.ndarray, sr: int,
                  f0_range: tuple[float, float]) -> tuple[Analysis, Analysis]:
    return analyze(ref, sr, "ref", f0_range), analyze(syn, sr, "syn", f0_range)


def mcd_dtw(ref: np.ndarray, syn: np.ndarray, sr: int, *, f0_range: tuple[float, float] = F0_RANGE) -> float:
    """Mel-cepstral distortion in dB of ``syn`` against ``ref`` after DTW alignment."""
    return _mcd(align(*_analyze_pair(ref, syn, sr, f0_range)))


def f0_rmse(ref: np.ndarray, syn: np.ndarray, sr: int, *,
            f0_range: tuple[float, float] = F0_RANGE) -> dict[str, float]:
    """{rmse_hz, rmse_cents, vuv_error} of ``syn`` against ``ref``; RMSEs are NaN if no pair is voiced in both."""
    a, b = _analyze_pair(ref, syn, sr, f0_range)
    return _f0_stats(a, b, align(a, b))


_ENCODER: Any = None
_ENCODER_LOCK = threading.Lock()


def _encoder() -> Any:
    """The resemblyzer VoiceEncoder on CPU, loaded once per process (its weights ship in the wheel)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = _quiet_import("resemblyzer").VoiceEncoder("cpu", verbose=False)
        return _ENCODER


def _to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    from scipy.signal import resample_poly

    sig = _signal(x, "signal")
    if sr != SPEAKER_SR:
        g = math.gcd(sr, SPEAKER_SR)
        sig = resample_poly(sig, SPEAKER_SR // g, sr // g)
    return sig.astype(np.float32)


def speaker_embedding(x: np.ndarray, sr: int) -> np.ndarray:
    """Unit-norm 256-d resemblyzer embedding of a clip (volume normalised, long silences trimmed)."""
    audio = _quiet_import("resemblyzer.audio")
    wav = _to_16k(x, sr)
    trimmed = audio.preprocess_wav(wav)  # no source_sr: already 16 kHz, skips librosa's resampler
    if trimmed.size < _MIN_TRIMMED_S * SPEAKER_SR:
        trimmed = audio.normalize_volume(wav, audio.audio_norm_target_dBFS, increase_only=True)
    with _torch_threads(1):
        embedding = _encoder().embed_utterance(trimmed.astype(np.float32))
    return np.asarray(embedding, dtype=np.float64)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` threads for a while. The encoder's LSTM is a few small steps per frame:
    on a busy 2-core box two OpenMP threads wait on each other at every step (seconds per clip),
    one thread takes ~10 ms. torch's thread count is process-wide, so it is restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def speaker_similarity(ref: np.ndarray, syn: np.ndarray, sr: int) -> float:
    """Cosine similarity of the two clips' speaker embeddings (1 = same voice)."""
    return _cosine(speaker_embedding(ref, sr), speaker_embedding(syn, sr))


def evaluate_pairs(pairs: list[tuple[np.ndarray, np.ndarray]], sr: int, *,
                   f0_range: tuple[float, float] = F0_RANGE) -> dict[str, float]:
    """Means over (ref, syn) pairs: mcd_db, f0_rmse_hz, f0_rmse_cents, vuv_error, speaker_similarity; and n.

    Each clip is analysed once and shared by all metrics. F0 means skip pairs with no frame
    voiced in both (NaN if none has one).
    """
    if not pairs:
        raise ValueError("evaluate_pairs needs at least one (ref, syn) pair")
    rows = [_evaluate_pair(ref, syn, sr, f0_range) for ref, syn in pairs]
    means = {key: _mean([row[key] for row in rows]) for key in rows[0]}
    return {**means, "n": len(rows)}


def _evaluate_pair(ref: np.ndarray, syn: np.ndarray, sr: int, f0_range: tuple[float, float]) -> dict[str, float]:
    a, b = _analyze_pair(ref, syn, sr, f0_range)
    al = align(a, b)
    f0 = _f0_stats(a, b, al)
    return {"mcd_db": _mcd(al), "f0_rmse_hz": f0["rmse_hz"], "f0_rmse_cents": f0["rmse_cents"],
            "vuv_error": f0["vuv_error"], "speaker_similarity": speaker_similarity(ref, syn, sr)}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan
