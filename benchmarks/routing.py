#!/usr/bin/env python
"""Routing benchmark: does the latency-aware scheduler beat nginx-style least_conn on a mixed fleet?

A heterogeneous fleet of 12 agents (real processes, real Mosquitto) runs the benchmark-only
``timed`` engine, whose synthesis takes exactly the wall time its real-time factor implies; one
cloud agent turns 10x slower halfway through each run. Open-loop Poisson arrivals of Chinese
texts (10-200 characters) at fractions of the fleet's capacity; the same seeded trace per load is
replayed against each scheduler policy (``VOICEFLEET_SCHEDULER_POLICY``), each run on a fresh
broker, control plane and agents. Completion time per job = finished_at - created_at.

Placement is quality-first (control_plane/scheduler.py): every agent of the default fleet claims the
same quality tier, so the policies are compared on speed alone, as before tiers existed. With
``--mixed-tiers`` the two fastest edge agents claim the formant tier (eSpeak boxes): quality-first
placement then leaves them idle (no job here has a deadline) while least_conn and round_robin use
them; the "best%" column is the share of jobs spoken by the best tier, the price of speed in quality.

Prints a table per load (or one JSON object with ``--json``) and PASS/MISS against the targets;
exits 0 either way (1 only if a run could not be carried out). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import httpx  # noqa: E402

from benchmarks.fleet import TERMINAL, CpuMeter, bench_cluster, log_tails, online, wait_final  # noqa: E402
from benchmarks.load import Arrival, replay  # noqa: E402
from benchmarks.report import AUTH, finite  # noqa: E402
from benchmarks.stats import pct  # noqa: E402
from voicefleet.broker import MosquittoBroker  # noqa: E402
from voicefleet.processes import terminate, terminate_all  # noqa: E402
from voicefleet_cli.onebox import Cluster, ClusterError  # noqa: E402

POLICIES = ("round_robin", "least_conn", "latency")
BEST_TIER = "neural"  # the best tier any agent of these fleets claims
S_PER_CHAR = 0.06  # the timed engine's audio seconds per character (its default)
MIN_CHARS, MAX_CHARS = 10, 200
MEAN_AUDIO_S = (MIN_CHARS + MAX_CHARS) / 2 * S_PER_CHAR
EDGE_RTFS = (0.05, 0.08, 0.12, 0.16, 0.2, 0.3, 0.4, 0.5)
CLOUD_RTF, CLOUD_SLOTS, CLOUD_WORKERS = 0.03, 2, 3
SLOWDOWN = 10.0
SLOW_AGENT_GRACE_S = 4.0  # the slowing agent starts alone; the run starts this long after it is spawned
STALL_S = 30.0  # stop waiting for outstanding jobs after this long without one finishing
# Common characters; only a text's length matters to the timed engine.
HANZI = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种"
         "面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本"
         "去把性好应开它合还因由其些")


def log(msg: str) -> None:
    print(f"[routing] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- fleet


@dataclass(frozen=True)
class AgentSpec:
    name: str
    role: str
    slots: int
    rtf: float  # healthy
    slows: bool = False  # turns SLOWDOWN x slower halfway through each run
    tier: str = "neural"  # the quality tier it claims

    def env(self, slowdown_at: float) -> dict[str, str]:
        env = {"VOICEFLEET_MAX_CONCURRENCY": str(self.slots), "VOICEFLEET_TIMED_RTF": str(self.rtf),
               "VOICEFLEET_TIMED_S_PER_CHAR": str(S_PER_CHAR), "VOICEFLEET_TIMED_TIER": self.tier}
        if self.slows:
            env |= {"VOICEFLEET_TIMED_SLOWDOWN": str(SLOWDOWN), "VOICEFLEET_TIMED_SLOWDOWN_AT": f"{slowdown_at:.3f}"}
        return env


FLEET = (*(AgentSpec(f"edge{i}", "edge", 1, rtf) for i, rtf in enumerate(EDGE_RTFS)),
         *(AgentSpec(f"cloud{i}", "cloud", CLOUD_SLOTS, CLOUD_RTF) for i in range(CLOUD_WORKERS)),
         AgentSpec("cloudslow", "cloud", CLOUD_SLOTS, CLOUD_RTF, slows=True))


def mixed_tiers(fleet: tuple[AgentSpec, ...]) -> tuple[AgentSpec, ...]:
    """The two fastest edge agents claim the formant tier."""
    fastest = sorted((a for a in fleet if a.role == "edge"), key=lambda a: a.rtf)[:2]
    return tuple(replace(a, tier="formant") if a in fastest else a for a in fleet)


def capacity(fleet: tuple[AgentSpec, ...], *, slowed: bool = False) -> float:
    """Jobs/s the fleet can finish: sum of slots / (RTF x mean audio seconds per job)."""
    return sum(a.slots / (a.rtf * (SLOWDOWN if slowed and a.slows else 1) * MEAN_AUDIO_S) for a in fleet)


# ---------------------------------------------------------------------------------- trace


def make_trace(rate: float, seconds: float, seed: int) -> list[Arrival]:
    """Poisson arrivals at ``rate`` jobs/s for ``seconds``; lengths uniform in MIN..MAX_CHARS."""
    rng = random.Random(seed)
    trace, t = [], rng.expovariate(rate)
    while t < seconds:
        trace.append(Arrival(t, "".join(rng.choices(HANZI, k=rng.randint(MIN_CHARS, MAX_CHARS)))))
        t += rng.expovariate(rate)
    return trace


# ----------------------------------------------------------------------------- one run


async def wait_finished(api: str, accepted: int, timeout_s: float) -> None:
    """Until every accepted job is final, ``timeout_s`` passed, or none finished for STALL_S."""
    async with httpx.AsyncClient(base_url=api, timeout=30, headers=AUTH) as client:
        await wait_final(client, accepted, stall_s=STALL_S, poll_s=0.5, timeout_s=timeout_s, log=log)


async def fetch_jobs(api: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The job rows by id: the list endpoint (newest 1000) first, one GET each for the rest; an id the
    control plane does not know (404) is left out, so the summary counts it lost."""
    async with httpx.AsyncClient(base_url=api, timeout=30, headers=AUTH) as client:
        r = await client.get("/v1/jobs", params={"limit": 1000})
        rows = {j["id"]: j for j in r.json()} if r.status_code == 200 else {}
        sem = asyncio.Semaphore(8)

        async def one(job_id: str) -> None:
            async with sem:
                resp = await client.get(f"/v1/jobs/{job_id}")
                if resp.status_code == 404:
                    return
                resp.raise_for_status()
                rows[job_id] = resp.json()

        await asyncio.gather(*(one(i) for i in ids if i not in rows))
    return {i: rows[i] for i in ids if i in rows}


class Run:
    """One (load, policy): fresh broker, control plane and 12 agents in ``home``; stopped by stop()."""

    def __init__(self, home: Path, tag: str, policy: str, fleet: tuple[AgentSpec, ...] = FLEET):
        self.home, self.tag, self.policy, self.fleet = home, tag, policy, fleet
        self.broker = MosquittoBroker(home / "broker")
        self.cluster: Cluster | None = None

    def device_id(self, spec: AgentSpec) -> str:
        return f"{self.tag}-{spec.name}"  # unique per run: no state of an earlier run can match

    def start(self, seconds: float) -> tuple[float, float]:
        """Start everything; returns the run's start and the slowdown, both as unix times."""
        self.broker.start()
        self.cluster = bench_cluster(self.home, self.broker.url, VOICEFLEET_CONTROL_ID=f"control-{self.tag}")
        self.cluster.start_control_plane(VOICEFLEET_SCHEDULER_POLICY=self.policy)
        self._start_agents([a for a in self.fleet if not a.slows], slowdown_at=0.0)
        # SLOWDOWN_AT is fixed at spawn, so the run's start is planned before the last agent starts.
        start = time.time() + SLOW_AGENT_GRACE_S
        slowdown_at = start + seconds / 2
        self._start_agents([a for a in self.fleet if a.slows], slowdown_at)
        return max(start, time.time()), slowdown_at  # if it came up late, the slowdown comes sooner in the run

    def _start_agents(self, specs: list[AgentSpec], slowdown_at: float) -> None:
        assert self.cluster is not None
        for spec in specs:
            self.cluster.start_agent(self.device_id(spec), role=spec.role, engine="timed", wait=False,
                                     **spec.env(slowdown_at))
        ids = {self.device_id(s) for s in specs}
        self.cluster.wait(lambda: online(self.cluster.api, ids) == len(ids), f"{len(ids)} agents online")

    def cpu_meter(self) -> CpuMeter:
        c = self.cluster
        return CpuMeter({"control_plane": [c.control.pid], "agents": [p.pid for p in c.agents.values()],
                         "broker": [self.broker.pid] if self.broker.pid else [], "load_generator": [os.getpid()]})

    def log_tails(self, lines: int = 10) -> str:
        return log_tails(self.home, lines)

    def stop(self) -> None:
        """All agents are signalled at once (each drains in parallel), then the control plane."""
        if self.cluster is not None:
            terminate_all(list(self.cluster.agents.values()), timeout=40.0)
            if self.cluster.control is not None:
                terminate(self.cluster.control, timeout=40.0)
        self.broker.stop()


def run_one(home: Path, tag: str, policy: str, trace: list[Arrival], args: argparse.Namespace) -> dict[str, Any]:
    run = Run(home, tag, policy, args.fleet)
    try:
        t0 = time.monotonic()
        start, slowdown_at = run.start(args.seconds)
        fleet_start_s = time.monotonic() - t0
        time.sleep(max(0.0, start - time.time()))  # idle until the planned start, outside the CPU figures
        start_mono = time.monotonic() + start - time.time()
        meter = run.cpu_meter()
        meter.start()
        sent = asyncio.run(replay(run.cluster.api, trace, start_mono, args.connections))
        asyncio.run(wait_finished(run.cluster.api, len(sent["ids"]), args.drain_timeout))
        cpu = meter.stop()
        rows = asyncio.run(fetch_jobs(run.cluster.api, sent["ids"]))
    except (ClusterError, OSError, httpx.HTTPError) as exc:
        log(f"{policy}: the run failed ({type(exc).__name__}: {exc}); child logs:\n{run.log_tails()}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        run.stop()
    return {**summarize(rows, trace, sent, tag, slowdown_at), "slowdown_at_s": round(slowdown_at - start, 2),
            "fleet_start_s": round(fleet_start_s, 1), "cpu_s": cpu}


def summarize(found: dict[str, dict[str, Any]], trace: list[Arrival], sent: dict[str, Any], tag: str,
              slowdown_unix: float) -> dict[str, Any]:
    """Figures of one run. ``found``: job rows by id; ``sent["ids"]``: the ids the API answered 201 for.
    A job is lost if its row is missing or not final: counted from the ids, not as a remainder."""
    accepted: list[str] = sent["ids"]
    rows = [found[i] for i in accepted if i in found]
    lost = [i for i in accepted if i not in found or found[i]["state"] not in TERMINAL]
    states = Counter(r["state"] for r in rows)
    done = [r for r in rows if r["state"] == "done"]
    times = [r["finished_at"] - r["created_at"] for r in done]
    by_device: dict[str, list[float]] = {}
    for r, t in zip(done, times, strict=True):
        by_device.setdefault(r["device_id"].removeprefix(f"{tag}-"), []).append(t)
    slowed = sum(1 for r in done if r["device_id"].endswith("-cloudslow") and (r["assigned_at"] or 0) >= slowdown_unix)
    tiers = Counter(str((r.get("spoken_by") or {}).get("tier")) for r in done)
    return {
        "jobs": len(trace), "accepted": len(accepted), "done": len(done), "failed": states.get("failed", 0),
        "cancelled": states.get("cancelled", 0), "lost": len(lost), "lost_ids": lost[:10],
        "rejected_429": sent["statuses"].get("429", 0),
        "other_submit_errors": {k: v for k, v in sent["statuses"].items() if k not in ("201", "429")},
        "completion_s": {"p50": _r(pct(times, 50)), "p99": _r(pct(times, 99)), "max": _r(max(times, default=math.nan)),
                         "mean": _r(sum(times) / len(times) if times else math.nan)},
        "tiers": dict(tiers), "best_tier_share": round(tiers.get(BEST_TIER, 0) / max(len(done), 1), 3),
        "edge_share": round(sum(len(v) for k, v in by_device.items() if k.startswith("edge")) / max(len(done), 1), 3),
        "slowed_agent_jobs_after_slowdown": slowed,
        "by_device": {k: {"jobs": len(v), "p50_s": _r(pct(v, 50))} for k, v in sorted(by_device.items())},
        "policy_reported": dict(Counter(str((r.get("explain") or {}).get("policy")) for r in rows)),
        "submit_lag_p99_ms": sent["lag_p99_ms"],
    }


def _r(x: float) -> float:
    return round(x, 3)


# ------------------------------------------------------------------------------ report


def compare(policies: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    lat, lc = policies.get("latency", {}), policies.get("least_conn", {})
    if "completion_s" not in lat or "completion_s" not in lc:
        return {}
    return {f"latency_vs_least_conn_{q}": _ratio(lat["completion_s"][q], lc["completion_s"][q]) for q in ("p50", "p99")}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b and not (math.isnan(a) or math.isnan(b)) else None


def targets(loads: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    def figures(load: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        pols = loads.get(load, {}).get("policies", {})
        lat, lc = pols.get("latency", {}), pols.get("least_conn", {})
        return (lat, lc) if "completion_s" in lat and "completion_s" in lc else None

    out: dict[str, dict[str, Any]] = {}
    if f := figures("0.8"):
        lat, lc = f
        value, limit = lat["completion_s"]["p99"], 0.5 * lc["completion_s"]["p99"]
        out["p99_at_80pct"] = _target("latency p99 <= 0.5 x least_conn p99", value, value <= limit, f"<= {limit:.3f}")
    if f := figures("0.95"):
        lat, lc = f
        out["no_loss_at_95pct"] = _target("latency: no accepted job lost", lat["lost"], lat["lost"] == 0, "0")
        value, limit = lat["completion_s"]["p99"], 3 * lc["completion_s"]["p50"]
        out["p99_at_95pct"] = _target("latency p99 < 3 x least_conn p50", value, value < limit, f"< {limit:.3f}")
    return out


def _target(what: str, value: float, ok: bool, need: str) -> dict[str, Any]:
    return {"what": what, "value": value, "target": need, "result": "PASS" if ok else "MISS"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    args.fleet = mixed_tiers(FLEET) if args.mixed_tiers else FLEET
    cap = capacity(args.fleet)
    loads: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vf-routing-") as tmp:
        for li, load in enumerate(args.loads):
            rate = load * cap
            trace = make_trace(rate, args.seconds, seed=args.seed * 1000 + li)
            entry = loads[f"{load:g}"] = {"rate_per_s": round(rate, 2), "arrivals": len(trace), "policies": {}}
            for policy in args.policies:
                tag = f"r{li}{policy[:3]}{os.getpid() % 10000}"
                log(f"load {load:g} ({rate:.1f} jobs/s, {len(trace)} jobs), policy {policy}")
                entry["policies"][policy] = run_one(Path(tmp) / tag, tag, policy, trace, args)
            entry["ratios"] = compare(entry["policies"])
    return {
        "config": {"seconds": args.seconds, "loads": args.loads, "policies": args.policies, "seed": args.seed,
                   "connections": args.connections, "cpus": os.cpu_count(), "python": sys.version.split()[0],
                   "engine": "timed (benchmark-only BenchmarkTimedEngine: a quiet pattern paced by its RTF)",
                   "s_per_char": S_PER_CHAR, "chars": [MIN_CHARS, MAX_CHARS], "mean_audio_s": MEAN_AUDIO_S},
        "fleet": [asdict(a) for a in args.fleet], "mixed_tiers": args.mixed_tiers,
        "capacity_jobs_per_s": round(cap, 2),
        "capacity_after_slowdown_jobs_per_s": round(capacity(args.fleet, slowed=True), 2),
        "loads": loads,
        "targets": targets(loads),
    }


def print_table(r: dict[str, Any]) -> None:
    c = r["config"]
    print(f"voicefleet routing benchmark — {c['cpus']} CPUs, Python {c['python']}, engine {c['engine']}")
    print(f"fleet: 8 edge x1 slot (RTF {', '.join(f'{x:g}' for x in EDGE_RTFS)}), {CLOUD_WORKERS} cloud x{CLOUD_SLOTS} "
          f"(RTF {CLOUD_RTF:g}), 1 cloud x{CLOUD_SLOTS} (RTF {CLOUD_RTF:g}, x{SLOWDOWN:g} from mid-run)")
    formant = [a["name"] for a in r["fleet"] if a["tier"] != BEST_TIER]
    print(f"tiers: all {BEST_TIER}" if not formant else f"tiers: {', '.join(formant)} formant, the rest {BEST_TIER}")
    print(f"capacity {r['capacity_jobs_per_s']} jobs/s at the healthy RTFs ({r['capacity_after_slowdown_jobs_per_s']} "
          f"after the slowdown); mean audio {c['mean_audio_s']:.2f} s/job; {c['seconds']:g} s of Poisson arrivals")
    for load, entry in r["loads"].items():
        print(f"\nload {load}: {entry['rate_per_s']} jobs/s, {entry['arrivals']} arrivals")
        print(f"  {'policy':<12}{'jobs':>6}{'done':>6}{'lost':>6}{'fail':>6}{'429':>5}{'p50 s':>9}{'p99 s':>9}"
              f"{'max s':>9}{'edge%':>7}{'best%':>7}{'slowed':>7}  scheduler says")
        for policy, x in entry["policies"].items():
            print("  " + _row(policy, x))
        ratios = entry.get("ratios") or {}
        if ratios:
            print(f"  latency/least_conn: p50 {ratios['latency_vs_least_conn_p50']}, "
                  f"p99 {ratios['latency_vs_least_conn_p99']}")
        for policy, x in entry["policies"].items():
            if "cpu_s" in x:
                print(f"  {policy}: fleet up in {x['fleet_start_s']} s, slowdown at +{x['slowdown_at_s']} s, "
                      f"submit lag p99 {x['submit_lag_p99_ms']} ms, CPU s "
                      + ", ".join(f"{k} {v}" for k, v in x["cpu_s"].items()))
    print("\ntargets")
    if not r["targets"]:
        print("  (none measured: they need loads 0.8 / 0.95 and both latency and least_conn)")
    for t in r["targets"].values():
        print(f"  {t['result']:<4}  {t['what']:<38} {t['value']!s:>8}  (target {t['target']})")


def _row(policy: str, x: dict[str, Any]) -> str:
    if "error" in x:
        return f"{policy:<12}ERROR {x['error']}"
    cs = x["completion_s"]
    says = ",".join(x["policy_reported"])
    return (f"{policy:<12}{x['jobs']:>6}{x['done']:>6}{x['lost']:>6}{x['failed']:>6}{x['rejected_429']:>5}"
            f"{cs['p50']:>9.3f}{cs['p99']:>9.3f}{cs['max']:>9.3f}{100 * x['edge_share']:>7.1f}"
            f"{100 * x['best_tier_share']:>7.1f}"
            f"{x['slowed_agent_jobs_after_slowdown']:>7}  {says}")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _policies(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if bad := [n for n in names if n not in POLICIES]:
        raise argparse.ArgumentTypeError(f"unknown policy {bad[0]!r}; choose from {', '.join(POLICIES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of arrivals per run (default 30)")
    ap.add_argument("--loads", type=_floats, default=[0.5, 0.8, 0.95], help="fractions of capacity (0.5,0.8,0.95)")
    ap.add_argument("--policies", type=_policies, default=list(POLICIES), help="round_robin,least_conn,latency")
    ap.add_argument("--seed", type=int, default=1, help="seed of the arrival traces (default 1)")
    ap.add_argument("--mixed-tiers", action="store_true",
                    help="the two fastest edge agents claim the formant tier (see the module docstring)")
    ap.add_argument("--connections", type=int, default=8, help="keep-alive HTTP connections (default 8)")
    ap.add_argument("--drain-timeout", type=float, default=120.0,
                    help="seconds after the last arrival to wait for jobs; unfinished ones count as lost (120)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the finally blocks stop every child
    result = run(args)
    if args.json:
        print(json.dumps(finite(result), ensure_ascii=False))
    else:
        print_table(result)
    failed = any("error" in x for e in result["loads"].values() for x in e["policies"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
