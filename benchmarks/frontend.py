"""Frontend speed, single-threaded: text normalisation + Mandarin G2P in characters per second, and
speaker-embedding extraction in milliseconds per 3 s voice prompt, and polyphone accuracy on the
CPP dev split for ours, plain pypinyin and g2pM side by side (``benchmarks/cpp.py``), and on short
everyday sentences labelled by hand (``benchmarks/everyday_polyphones.tsv``).

``python benchmarks/frontend.py [--json] [--seconds 3] [--clips 10] [--parts text,embedding,cpp,everyday]
[--cpp-sentences N]``. Text inputs are the golden table's and the distillation's held-out
sentences; warm-up (the lexicon cache, the wetext graphs, loading the speaker encoder or g2pM) is
timed apart. numpy's BLAS (g2pM) and torch are held to one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing
GOLDEN = ROOT / "tests" / "data" / "golden_zh.tsv"
PARTS = ("text", "embedding", "cpp", "everyday")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads: every figure here is one thread's


def inputs() -> list[str]:
    from models.distill.corpus import heldout_sentences

    golden = [line.split("\t")[0] for line in GOLDEN.read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    return golden + list(heldout_sentences())


def _rate(texts: list[str], work, seconds: float, chars: int | None = None) -> tuple[float, int]:
    """Characters per second of ``work`` over ``texts`` (``chars`` a round, default theirs), cycled for
    at least ``seconds``."""
    chars, rounds, start = chars or sum(len(t) for t in texts), 0, time.perf_counter()
    while True:
        for text in texts:
            work(text)
        rounds += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return rounds * chars / elapsed, rounds


def measure(seconds: float = 3) -> dict:
    from voicefleet.text.mandarin import phrases
    from voicefleet.text.normalize import normalize, zh_grammar

    texts = inputs()
    start = time.perf_counter()
    grammar = zh_grammar()
    normalised = [normalize(text, "zh") for text in texts]  # warm-up: lexicon cache, FSTs, regex caches
    for text in normalised:
        phrases(text)
    warmup_s = time.perf_counter() - start
    share = seconds / 3
    normalize_cps, _ = _rate(texts, lambda t: normalize(t, "zh"), share)
    # G2P alone: on the normalised texts (``phrases`` finds no digits left to read), counted in the
    # raw texts' characters like the other two, so that their times per character add up.
    g2p_cps, _ = _rate(normalised, phrases, share, chars=sum(map(len, texts)))
    both_cps, rounds = _rate(texts, phrases, share)  # the whole path: ``phrases`` normalises raw text
    return {"texts": len(texts), "chars": sum(len(t) for t in texts), "wetext": grammar is not None,
            "warmup_s": round(warmup_s, 3), "normalize_chars_per_s": round(normalize_cps),
            "g2p_chars_per_s": round(g2p_cps), "chars_per_s": round(both_cps), "rounds": rounds}


def measure_embedding(n: int = 10, clip_s: float = 3.0) -> dict[str, float | int | str]:
    """Speaker-embedding cost on this machine: ms per ``clip_s`` speech-like clip, one torch thread,
    no cache. The first call, which loads the model, is timed apart."""
    import numpy as np

    from benchmarks.signals import speechlike
    from control_plane.voices import EMBED_MODEL, embed
    from voicefleet.audio_checks import EMBED_SR

    clips = [speechlike(clip_s, EMBED_SR, seed=i, f0=100 + 10 * i).astype(np.float32) for i in range(n + 1)]
    t0 = time.perf_counter()
    embed(clips[0])
    first_ms = (time.perf_counter() - t0) * 1000
    times = []
    for clip in clips[1:]:
        t0 = time.perf_counter()
        embed(clip)
        times.append((time.perf_counter() - t0) * 1000)
    return {"model": EMBED_MODEL, "clips": n, "clip_s": clip_s, "threads": 1, "first_call_ms": round(first_ms, 1),
            "ms_per_clip_mean": round(statistics.fmean(times), 2),
            "ms_per_clip_p50": round(statistics.median(times), 2),
            "ms_per_clip_min": round(min(times), 2), "ms_per_clip_max": round(max(times), 2)}


def measure_cpp(limit: int | None = None) -> dict:
    """Polyphone accuracy and characters/s of each system on the CPP dev split (first ``limit``)."""
    from benchmarks.cpp import CPP_DIR, evaluate, load

    items = load(CPP_DIR, limit)
    return {"data": "cpp-dev", "sentences": len(items), "threads": 1, "systems": evaluate(items)}


def measure_everyday() -> dict:
    """Polyphone accuracy of each system on each set of hand-labelled everyday sentences."""
    from benchmarks.cpp import EVERYDAY, EVERYDAY_B, evaluate, load_everyday

    return {path.name: {"sentences": len(items), "threads": 1, "systems": evaluate(items)}
            for path in (EVERYDAY, EVERYDAY_B) for items in [load_everyday(path)]}


def _print(report: dict) -> None:
    if "text" in report:
        text = report["text"]
        print(f"text frontend, 1 thread, {text['texts']} texts ({text['chars']} characters), wetext {text['wetext']}")
        print(f"  normalisation      {text['normalize_chars_per_s']:>9,} chars/s")
        print(f"  G2P (normalised)   {text['g2p_chars_per_s']:>9,} chars/s")
        print(f"  whole path         {text['chars_per_s']:>9,} chars/s   (warm-up {text['warmup_s']} s)")
    if "embedding" in report:
        print(f"speaker embedding, 1 thread: {json.dumps(report['embedding'])}")
    sets = [("CPP dev split", report["cpp"])] if "cpp" in report else []
    sets += [(f"everyday sentences ({name})", figures) for name, figures in report.get("everyday", {}).items()]
    for title, figures in sets:
        print(f"polyphones, {title}, {figures['sentences']} sentences, 1 thread")
        for name, fig in figures["systems"].items():
            print(f"  {name:<10} {fig['accuracy']:>7.2%}  {fig['chars_per_s']:>9,} chars/s   "
                  f"(unaligned {fig['unaligned']}, most missed: {', '.join(fig['most_missed'][:5])})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=3.0, help="time spent per text measurement")
    ap.add_argument("--clips", type=int, default=10, help="voice prompts to embed")
    ap.add_argument("--parts", default=",".join(PARTS), help="which of text,embedding,cpp to run")
    ap.add_argument("--cpp-sentences", type=int, default=None, help="first N CPP sentences (default all)")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        ap.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    report = {}
    if "text" in parts:
        report["text"] = measure(args.seconds)
    if "embedding" in parts:
        report["embedding"] = measure_embedding(args.clips)
    if "cpp" in parts:
        report["cpp"] = measure_cpp(args.cpp_sentences)
    if "everyday" in parts:
        report["everyday"] = measure_everyday()
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
