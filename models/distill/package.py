"""Bundle stage: the chosen ONNX graphs, a manifest saying how they were made, a signature."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path

from models.distill import intelligibility
from models.distill.teachers import SAMPLE_RATE, load_teacher
from voicefleet.bundle import generate_signing_key, load_private_key, write_bundle
from voicefleet.text.mandarin import symbols

DEFAULT_KEY = Path.home() / ".config" / "voicefleet" / "signing.key"


def signing_key(path: Path | None):
    """The key from ``--key``, ``VOICEFLEET_SIGNING_KEY`` or the user's default (made on first use)."""
    path = Path(path or os.environ.get("VOICEFLEET_SIGNING_KEY") or DEFAULT_KEY)
    if path.exists():
        return load_private_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key(path)
    print(f"[distill] new signing key {path}; agents must trust {path}.pub (VOICEFLEET_TRUSTED_KEYS)")
    return key


def package(args, report: dict) -> dict:
    work: Path = args.work
    evaluation = report["evaluate"]
    intelligibility.check(evaluation, args.max_cer)  # before anything is written
    if "intelligibility" in evaluation:  # the bound it was packaged under (None: not gated)
        evaluation = {**evaluation, "intelligibility": {
            **evaluation["intelligibility"], "max_cer": None if math.isinf(args.max_cer) else args.max_cer}}
    variant = evaluation["chosen"]
    suffix = "" if variant == "fp32" else f".{variant}"
    (work / "symbols.json").write_text(json.dumps(list(symbols())) + "\n")
    files = {"encoder" + suffix + ".onnx": work / f"encoder{suffix}.onnx",
             "synth" + suffix + ".onnx": work / f"synth{suffix}.onnx", "symbols.json": work / "symbols.json"}
    teacher_info = load_teacher(args.teacher).info
    train = report.get("train", {})
    fields = {
        "model_id": f"zh-student-{args.teacher}",
        "version": args.version or datetime.now(UTC).strftime("%Y%m%d.%H%M%S"),
        "engine": "student-onnx",
        "languages": ["zh"],
        "voices": ["default"],
        "sample_rate": SAMPLE_RATE,
        "licence": teacher_info.get("licence", "as the teacher's output"),
        "provenance": {"teacher": teacher_info, "corpus": report.get("teacher", {}),
                       "training": train, "pipeline": "voicefleet distill" + (" --quick" if args.quick else "")},
        "evaluation": evaluation,
        "extra": {"config": report["export"]["config"], "runtime": _runtime(report["export"], variant),
                  "frontend": "voicefleet.text.mandarin (Baker 219-symbol phone set)"},
    }
    manifest = write_bundle(args.out, files, fields, signing_key(args.key))
    return {"path": str(args.out), "variant": variant, "key_id": manifest.key_id,
            "bytes": sum(f.size for f in manifest.files.values())}



def _runtime(export: dict, variant: str) -> dict:
    """What the edge engine needs to run the graphs as they were evaluated."""
    calibration = export.get("duration_calibration")
    return {"variant": variant} | ({"duration_calibration": calibration} if calibration else {})
