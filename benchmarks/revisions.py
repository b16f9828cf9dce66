#!/usr/bin/env python
"""One benchmark, two revisions, side by side in one run: a git revision (checked out in a
temporary worktree) against the working tree, run in turns (A B A B ...) so that the machine's
drift falls on both alike. Prints each numeric figure's median per side and their ratio (working
tree / revision), or one JSON object with ``--json``.

    python benchmarks/revisions.py --base 96f8603 --runs 2 dispatch.py --jobs 2000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def flatten(obj, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a benchmark's JSON, keyed by their dotted path."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out |= flatten(value, f"{prefix}{key}.")
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix[:-1]] = float(obj)
    return out


def run_once(tree: Path, script: str, args: list[str]) -> dict[str, float]:
    """The benchmark from ``tree``'s own code (its folder first on the import path, children too)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(tree / "benchmarks" / script), "--json", *args], cwd=tree, env=env,
                          stdout=subprocess.PIPE, check=True)
    return flatten(json.loads(done.stdout))


def compare(base: str, script: str, args: list[str], runs: int) -> dict[str, dict[str, float | None]]:
    results: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory(prefix="vf-rev-") as tmp:
        worktree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(worktree), base], check=True)
        try:
            for i in range(runs):
                for side, tree in (("base", worktree), ("head", ROOT)):
                    print(f"run {i + 1}/{runs}: {side}", file=sys.stderr)
                    results[side].append(run_once(tree, script, args))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
    table = {}
    for key in results["base"][0]:
        a = [r[key] for r in results["base"] if key in r]
        b = [r[key] for r in results["head"] if key in r]
        if a and b:
            ma, mb = statistics.median(a), statistics.median(b)
            table[key] = {"base": ma, "head": mb, "ratio": round(mb / ma, 3) if ma else None}
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare the working tree against")
    ap.add_argument("--runs", type=int, default=2, help="runs per side, taken in turns (default 2)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--only", default="", help="comma-separated prefixes of the figures to show")
    ap.add_argument("script", help="the benchmark, e.g. dispatch.py")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    args = ap.parse_args()
    table = compare(args.base, args.script, args.args, args.runs)
    prefixes = tuple(p for p in args.only.split(",") if p)
    if prefixes:
        table = {k: v for k, v in table.items() if k.startswith(prefixes)}
    if args.json:
        print(json.dumps({"base": args.base, "script": args.script, "runs": args.runs, "figures": table}, indent=1))
        return
    print(f"{'figure':60} {'base ' + args.base[:10]:>16} {'working tree':>14} {'ratio':>7}")
    for key, row in table.items():
        ratio = "-" if row["ratio"] is None else row["ratio"]
        print(f"{key:60} {row['base']:16.4g} {row['head']:14.4g} {ratio:>7}")


if __name__ == "__main__":
    main()
