"""Fault injection, the long run: at least 1,000 jobs through a control plane (PostgreSQL), three
timed agents and a Mosquitto of its own, with ``--faults`` faults of mixed kinds at seeded random
times (agent SIGKILL mid-job, control plane SIGKILL + restart, broker restart, agent SIGSTOP past its
keep-alive, PostgreSQL stopped for 10 s). Checks the durability promise for every accepted job, each
stored WAV byte for byte against what the engine made for it (tests/faultlib.py), and prints
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

KINDS = ("agent_sigkill", "control_plane_sigkill", "broker_restart", "agent_sigstop", "database_outage")
LEAD_IN_S = 3.0  # let some jobs run before the first fault
# How long each kind keeps the next one waiting (they are injected one after another): most last up
# to ~5 s, a database outage 10 s (tests/faultlib.py DATABASE_DOWN_S).
GAP_S = {"database_outage": 12.0}
DEFAULT_GAP_S = 6.0


def plan_faults(rng: random.Random, count: int, span_s: float,
                of: tuple[str, ...] = KINDS) -> list[tuple[float, str]]:
    """``count`` (offset, kind) pairs over the submit span; every kind at least once when count allows."""
    kinds = [of[i % len(of)] for i in range(count)]
    rng.shuffle(kinds)
    gaps = [GAP_S.get(kind, DEFAULT_GAP_S) for kind in kinds]
    span_s = max(span_s, LEAD_IN_S + sum(gaps))
    slack = span_s - LEAD_IN_S - sum(gaps)
    cuts = sorted(rng.uniform(0, slack) for _ in range(count))
    return [(LEAD_IN_S + sum(gaps[:i]) + cut, kind) for i, (cut, kind) in enumerate(zip(cuts, kinds, strict=True))]


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
    started = time.monotonic()
    with PostgresServer() as pg, tempfile.TemporaryDirectory(prefix="vf-faults-") as tmp:
        # A server named by VOICEFLEET_TEST_PG_URL is not ours to stop: no database outage then.
        kinds = tuple(k for k in KINDS if k != "database_outage" or not pg.external)
        faults = plan_faults(rng, args.faults, args.jobs * args.interval, kinds)
        url = pg.create_database(f"faults_{uuid.uuid4().hex[:10]}")
        print(f"{args.jobs} jobs, {len(faults)} faults planned, logs in {tmp}/home", file=sys.stderr)
        with Harness(Path(tmp), url, rtf=args.rtf, pg=None if pg.external else pg) as h:
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
