"""Fault injection, the long run: at least 1,000 jobs through a control plane (PostgreSQL), three
timed agents and a Mosquitto of its own, with ``--faults`` faults of mixed kinds at seeded random
times (agent SIGKILL mid-job, control plane SIGKILL + restart, broker restart, agent SIGSTOP past its
keep-alive). Checks the durability promise for every accepted job (tests/faultlib.py) and prints
jobs, faults by kind, lost, duplicated, failed, p50/max time to recover and the wall time.

    python benchmarks/faults.py                      # 1000 jobs, 20 faults (a few minutes)
    python benchmarks/faults.py --jobs 150 --faults 4 --json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tests"):  # run from a checkout; faultlib and services live in tests/
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from faultlib import Harness, run_scenario  # noqa: E402
from services import PostgresServer  # noqa: E402

KINDS = ("agent_sigkill", "control_plane_sigkill", "broker_restart", "agent_sigstop")
LEAD_IN_S = 3.0  # let some jobs run before the first fault
MIN_GAP_S = 6.0  # a fault lasts up to ~5 s; they are injected one after another


def plan_faults(rng: random.Random, count: int, span_s: float) -> list[tuple[float, str]]:
    """``count`` (offset, kind) pairs over the submit span; every kind at least once when count allows."""
    kinds = [KINDS[i % len(KINDS)] for i in range(count)]
    rng.shuffle(kinds)
    span_s = max(span_s, LEAD_IN_S + count * MIN_GAP_S)
    slack = span_s - LEAD_IN_S - count * MIN_GAP_S
    cuts = sorted(rng.uniform(0, slack) for _ in range(count))
    return [(LEAD_IN_S + i * MIN_GAP_S + cut, kind) for i, (cut, kind) in enumerate(zip(cuts, kinds, strict=True))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000, help="jobs to get accepted (refused submits are retried)")
    ap.add_argument("--faults", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.15, help="seconds between submits")
    ap.add_argument("--rtf", type=float, default=0.2, help="the timed agents' real-time factor")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout; progress on stderr")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    faults = plan_faults(rng, args.faults, args.jobs * args.interval)
    started = time.monotonic()
    with PostgresServer() as pg, tempfile.TemporaryDirectory(prefix="vf-faults-") as tmp:
        url = pg.create_database(f"faults_{uuid.uuid4().hex[:10]}")
        print(f"{args.jobs} jobs, {len(faults)} faults planned, logs in {tmp}/home", file=sys.stderr)
        with Harness(Path(tmp), url, rtf=args.rtf) as h:
            report = run_scenario(h, jobs=args.jobs, interval_s=args.interval, faults=faults, seed=args.seed,
                                  timeout_s=300, until_accepted=True)
    result = report.summary() | {"wall_s": round(time.monotonic() - started, 1), "seed": args.seed,
                                 "ok": report.ok}
    if args.json:
        print(json.dumps(result))
    else:
        print(report.describe())
        print(f"failed {result['failed']}, time to recover p50 {result['recover_s_p50']}s "
              f"max {result['recover_s_max']}s, wall time {result['wall_s']}s, promise kept: {report.ok}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
