#!/usr/bin/env python
"""Dispatch benchmark: the control plane's job path against the raw MQTT round trip, in one run.

1. Raw broker: a fresh Mosquitto; a requester publishes QoS 1 to topic A, an echo client (its own
   process, like an agent) republishes to topic B, the requester receives on B. Sustained round
   trips/s with a window of outstanding messages, then one-at-a-time latency.
2. Full path on the same broker: the control plane and K agents (zero-work ``tone`` engine) as
   child processes. Throughput: N jobs over HTTP with several connections; latency: jobs one at
   a time, submit -> first chunk and submit -> done from the job rows' server-side timestamps.

Prints a table (or one JSON object with ``--json``), ratios, and PASS/MISS against the targets.
Progress goes to stderr. Every child process and temp dir is removed on exit, error or not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import httpx  # noqa: E402

from benchmarks.fleet import (  # noqa: E402
    TERMINAL,
    CpuMeter,
    bench_cluster,
    log_tails,
    online,
    terminal_count,
    wait_final,
)
from benchmarks.load import LeanPoster  # noqa: E402
from benchmarks.raw_mqtt import raw_broker  # noqa: E402
from benchmarks.report import AUTH, finite  # noqa: E402
from benchmarks.stats import dist_ms  # noqa: E402
from voicefleet.broker import MosquittoBroker  # noqa: E402

TARGET_JOBS_PER_S = 500.0
TARGET_OVERHEAD_MS = 10.0
TEXT = "今天下午三点提醒我开会。"
STALL_TIMEOUT_S = 30.0  # give up on outstanding jobs after this long without progress


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ full path


class Fleet:
    """The control plane and K tone agents as child processes (voicefleet_cli.onebox.Cluster)."""

    def __init__(self, home: Path, broker_url: str, agents: int, slots: int):
        self.cluster = bench_cluster(home, broker_url)
        self.api = self.cluster.api
        self.device_ids = [f"bench-{i}" for i in range(agents)]
        self.slots = slots

    def start(self) -> None:
        self.cluster.start_control_plane()
        for dev in self.device_ids:  # start all, then wait for all
            self.cluster.start_agent(dev, role="cloud", engine="tone", wait=False,
                                     VOICEFLEET_MAX_CONCURRENCY=str(self.slots))
        self.cluster.wait(lambda: self.online() == len(self.device_ids), "all agents online")

    def online(self) -> int:
        return online(self.api, self.device_ids)

    def pids(self) -> dict[str, list[int]]:
        c = self.cluster
        return {"control_plane": [c.control.pid] if c.control else [], "agents": [a.pid for a in c.agents.values()]}

    def log_tails(self, lines: int = 15) -> str:
        return log_tails(self.cluster.home, lines)

    def stop(self) -> None:
        self.cluster.stop()  # agents first, then the control plane; SIGKILL if one hangs


async def _fetch_jobs(client: httpx.AsyncClient, ids: list[str], conc: int) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(conc)

    async def one(job_id: str) -> dict[str, Any]:
        async with sem:
            r = await client.get(f"/v1/jobs/{job_id}")
            r.raise_for_status()
            return r.json()

    return await asyncio.gather(*(one(i) for i in ids))


async def _submit_all(api: str, *, jobs: int, conc: int, batch: int, ids: list[str], errors: Counter[str]) -> None:
    """``conc`` connections post ``jobs`` jobs between them; accepted ids go to ``ids``."""
    next_i = 0
    one = json.dumps({"text": TEXT, "lang": "zh"}).encode()

    async def submitter() -> None:
        nonlocal next_i
        async with LeanPoster(api) as conn:
            while next_i < jobs:
                n = min(batch, jobs - next_i)
                next_i += n
                try:
                    if batch == 1:
                        status, body = await conn.post("/v1/jobs", one)
                    else:
                        status, body = await conn.post(
                            "/v1/jobs/batch", json.dumps({"jobs": [{"text": TEXT, "lang": "zh"}] * n}).encode())
                except (OSError, asyncio.IncompleteReadError) as exc:
                    errors[type(exc).__name__] += n
                    return
                if status == 201:
                    doc = json.loads(body)
                    ids.extend([doc["id"]] if batch == 1 else [row["id"] for row in doc])
                else:
                    errors[str(status)] += n

    await asyncio.gather(*(submitter() for _ in range(conc)))


async def throughput(api: str, *, jobs: int, conc: int, meter: CpuMeter, batch: int = 1) -> dict[str, Any]:
    """``batch`` 1 posts each job alone to /v1/jobs; more posts that many per /v1/jobs/batch request."""
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=api, limits=limits, timeout=60, headers=AUTH) as client:
        before = await terminal_count(client)
        base_terminal = sum(before.get(s, 0) for s in TERMINAL)
        ids: list[str] = []
        errors: Counter[str] = Counter()
        meter.start()
        t_first = time.time()
        await _submit_all(api, jobs=jobs, conc=conc, batch=batch, ids=ids, errors=errors)
        t_submitted = time.time()
        await wait_final(client, len(ids), base=base_terminal, stall_s=STALL_TIMEOUT_S, log=log)
        cpu = meter.stop()
        rows = await _fetch_jobs(client, ids, conc)
    states = Counter(r["state"] for r in rows)
    done = [r for r in rows if r["state"] == "done"]
    t_last_done = max((r["finished_at"] for r in done), default=float("nan"))
    completion_s = t_last_done - t_first
    return {
        "jobs": jobs, "connections": conc, "batch": batch, "accepted": len(ids), "submit_errors": dict(errors),
        "submit_s": round(t_submitted - t_first, 3),
        "submit_per_s": round(len(ids) / (t_submitted - t_first), 1),
        "completion_s": round(completion_s, 3),
        "completed_per_s": round(len(done) / completion_s, 1) if done else 0.0,
        "done": len(done), "failed": states.get("failed", 0), "cancelled": states.get("cancelled", 0),
        "lost": len(ids) - sum(states.get(s, 0) for s in TERMINAL),
        "first_chunk_under_load": dist_ms([r["first_chunk_at"] - r["created_at"] for r in done
                                           if r["first_chunk_at"]]),
        "cpu_s": cpu,
    }


async def latency(api: str, *, count: int, warmup: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api, timeout=30, headers=AUTH) as client:
        ids: list[str] = []
        client_total: list[float] = []
        for i in range(warmup + count):
            t0 = time.perf_counter()
            r = await client.post("/v1/jobs", json={"text": TEXT, "lang": "zh"})
            r.raise_for_status()
            job_id = r.json()["id"]
            # Follow the audio like `voicefleet say`: the stream ends when the job is done.
            async with client.stream("GET", f"/v1/jobs/{job_id}/audio") as resp:
                async for _ in resp.aiter_raw():
                    pass
            if i >= warmup:
                client_total.append(time.perf_counter() - t0)
                ids.append(job_id)
        rows = await _fetch_jobs(client, ids, 8)
    done = [r for r in rows if r["state"] == "done"]
    return {
        "jobs": count, "done": len(done),
        "submit_to_first_chunk": dist_ms([r["first_chunk_at"] - r["created_at"] for r in done]),
        "submit_to_done": dist_ms([r["finished_at"] - r["created_at"] for r in done]),
        "client_submit_to_audio_end": dist_ms(client_total),
        # Where the time goes (control-plane clock throughout).
        "stages": {
            "submit_to_assigned": dist_ms([r["assigned_at"] - r["created_at"] for r in done]),
            "assigned_to_first_chunk": dist_ms([r["first_chunk_at"] - r["assigned_at"] for r in done]),
            "first_chunk_to_done": dist_ms([r["finished_at"] - r["first_chunk_at"] for r in done]),
        },
    }


# ---------------------------------------------------------------------------------- report


def measure(args: argparse.Namespace) -> tuple[dict[bool, dict[str, Any]], dict, dict, dict]:
    """The raw round trips (TCP_NODELAY on, then off), both throughput runs and the latency run."""
    with tempfile.TemporaryDirectory(prefix="vf-bench-") as tmp:
        home = Path(tmp)
        broker = MosquittoBroker(home / "broker")
        fleet: Fleet | None = None
        try:
            broker.start()
            raws = {}
            for nodelay in (True, False):
                log(f"broker {broker.url}: raw round trips, TCP_NODELAY {'on' if nodelay else 'off'}")
                # With Nagle on each sample takes ~40 ms (delayed ACK): fewer samples keep the run short.
                samples = args.rtt_samples if nodelay else min(args.rtt_samples, 200)
                raws[nodelay] = raw_broker(broker.url, nodelay=nodelay, count=args.rtt_count, window=args.rtt_window,
                                           samples=samples, payload_bytes=args.payload)
            log(f"starting control plane and {args.agents} agents")
            fleet = Fleet(home, broker.url, args.agents, args.slots)
            fleet.start()
            meter = CpuMeter({**fleet.pids(), "broker": [broker.pid] if broker.pid else [],
                              "benchmark_client": [os.getpid()]})
            log(f"throughput: {args.jobs} jobs over {args.connections} connections")
            tput = asyncio.run(throughput(fleet.api, jobs=args.jobs, conc=args.connections, meter=meter))
            log(f"throughput, batched: {args.jobs} jobs, {args.batch} per request")
            tput_b = asyncio.run(throughput(fleet.api, jobs=args.jobs, conc=max(1, args.connections // 4),
                                            meter=meter, batch=args.batch))
            log(f"latency: {args.latency_jobs} jobs one at a time")
            lat = asyncio.run(latency(fleet.api, count=args.latency_jobs, warmup=args.warmup))
        except BaseException as exc:
            tails = fleet.log_tails() if fleet is not None else ""
            log(f"stopped by {type(exc).__name__}; cleaning up" + (f"; child logs:\n{tails}" if tails else ""))
            raise
        finally:
            if fleet is not None:
                fleet.stop()
            broker.stop()
    return raws, tput, tput_b, lat


def run(args: argparse.Namespace) -> dict[str, Any]:
    raws, tput, tput_b, lat = measure(args)
    # The reference is the broker's real round trip (Nagle off on both ends); paho's default
    # (Nagle on, which voicefleet.mqtt turns off) is reported beside it.
    raw, raw_default = raws[True], raws[False]
    raw_p50 = raw["latency"]["p50_ms"]
    first_p50 = lat["submit_to_first_chunk"]["p50_ms"]
    overhead = round(first_p50 - raw_p50, 3)
    rate, rate_b = tput["completed_per_s"], tput_b["completed_per_s"]
    return {
        "config": {"jobs": args.jobs, "agents": args.agents, "slots_per_agent": args.slots,
                   "connections": args.connections, "latency_jobs": args.latency_jobs, "cpus": os.cpu_count(),
                   "python": sys.version.split()[0]},
        "raw_broker": raw,
        "raw_broker_paho_default_socket": raw_default,
        "throughput": tput,
        "throughput_batched": tput_b,
        "latency": lat,
        "ratios": {
            "completion_vs_raw_round_trips": round(rate / raw["round_trips_per_s"], 4),
            "first_chunk_p50_vs_raw_rtt_p50": round(first_p50 / raw_p50, 2) if raw_p50 else None,
            "overhead_p50_ms": overhead,
            "overhead_p50_ms_vs_paho_default_socket": round(first_p50 - raw_default["latency"]["p50_ms"], 3),
        },
        "targets": {
            "jobs_per_s": {"target": f">= {TARGET_JOBS_PER_S:g}", "value": rate,
                           "result": "PASS" if rate >= TARGET_JOBS_PER_S else "MISS"},
            "jobs_per_s_batched": {"target": f">= {TARGET_JOBS_PER_S:g}", "value": rate_b,
                                   "result": "PASS" if rate_b >= TARGET_JOBS_PER_S else "MISS"},
            "overhead_p50_ms": {"target": f"< {TARGET_OVERHEAD_MS:g}", "value": overhead,
                                "result": "PASS" if overhead < TARGET_OVERHEAD_MS else "MISS"},
            "no_lost_jobs": {"target": "0 lost, 0 failed",
                             "value": sum(t["lost"] + t["failed"] for t in (tput, tput_b)),
                             "result": "PASS" if all(t["lost"] + t["failed"] == 0 and t["done"] == t["accepted"]
                                                     == args.jobs for t in (tput, tput_b)) else "MISS"},
        },
    }


def print_table(r: dict[str, Any]) -> None:
    raw, lat, rat = r["raw_broker"], r["latency"], r["ratios"]
    raw_def = r["raw_broker_paho_default_socket"]
    c = r["config"]

    def d(x: dict[str, float]) -> str:
        return f"p50 {x['p50_ms']:8.2f} ms   p99 {x['p99_ms']:8.2f} ms   (n={x['n']})"

    print(f"voicefleet dispatch benchmark — {c['cpus']} CPUs, Python {c['python']}, {c['agents']} tone agents "
          f"x {c['slots_per_agent']} slots")
    print("\nraw broker (Mosquitto, paho MQTT 5, QoS 1, A -> echo -> B, "
          f"{raw['payload_bytes']} B payload, window {raw['window']})")
    for label, x in (("TCP_NODELAY (reference)", raw), ("paho default (Nagle on)", raw_def)):
        print(f"  {label}")
        print(f"    round trips/s               {x['round_trips_per_s']:10.1f}")
        print(f"    round-trip latency          {d(x['latency'])}")
    for tp in (r["throughput"], r["throughput_batched"]):
        how = "one job per POST /v1/jobs" if tp["batch"] == 1 else f"{tp['batch']} jobs per POST /v1/jobs/batch"
        print(f"\ncontrol plane throughput ({tp['jobs']} jobs, {how}, {tp['connections']} HTTP connections)")
        print(f"  submit rate (HTTP 201)        {tp['submit_per_s']:10.1f} jobs/s  ({tp['submit_s']:.2f} s)")
        print(f"  completion rate               {tp['completed_per_s']:10.1f} jobs/s  ({tp['completion_s']:.2f} s "
              "first submit -> last done)")
        print(f"  accepted/done/failed/lost     {tp['accepted']}/{tp['done']}/{tp['failed']}/{tp['lost']}"
              + (f"   submit errors {tp['submit_errors']}" if tp["submit_errors"] else ""))
        print(f"  submit->first chunk (loaded)  {d(tp['first_chunk_under_load'])}")
        print("  CPU seconds during the run    " + ", ".join(f"{k} {v}" for k, v in tp["cpu_s"].items()))
    print(f"\ncontrol plane latency ({lat['jobs']} jobs one at a time, server-side timestamps)")
    print(f"  submit -> first chunk         {d(lat['submit_to_first_chunk'])}")
    print(f"  submit -> done                {d(lat['submit_to_done'])}")
    print(f"  client POST -> audio end      {d(lat['client_submit_to_audio_end'])}")
    print("  stages (p50 of each step)")
    for name, x in lat["stages"].items():
        print(f"    {name:<28}{x['p50_ms']:9.2f} ms   p99 {x['p99_ms']:8.2f} ms")
    print("\nratios")
    print(f"  completion rate / raw round trips/s     {rat['completion_vs_raw_round_trips']:.4f}")
    print(f"  first-chunk p50 / raw RTT p50           {rat['first_chunk_p50_vs_raw_rtt_p50']}")
    print(f"  overhead p50 (first chunk - raw RTT)    {rat['overhead_p50_ms']:.2f} ms")
    print(f"  ... vs paho default socket RTT p50      {rat['overhead_p50_ms_vs_paho_default_socket']:.2f} ms")
    print("\ntargets")
    for name, t in r["targets"].items():
        print(f"  {t['result']:<4}  {name:<16} {t['value']!s:>10}  (target {t['target']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--jobs", type=int, default=2000, help="jobs in the throughput run (default 2000)")
    ap.add_argument("--agents", type=int, default=4, help="tone agents (default 4)")
    ap.add_argument("--slots", type=int, default=8, help="VOICEFLEET_MAX_CONCURRENCY per agent (default 8)")
    ap.add_argument("--connections", type=int, default=16, help="concurrent HTTP connections (default 16)")
    ap.add_argument("--batch", type=int, default=100, help="jobs per POST /v1/jobs/batch in the batched run (100)")
    ap.add_argument("--latency-jobs", type=int, default=200, help="sequential jobs for latency (default 200)")
    ap.add_argument("--warmup", type=int, default=10, help="sequential jobs run before the latency ones")
    ap.add_argument("--rtt-count", type=int, default=10000, help="raw round trips for the rate (default 10000)")
    ap.add_argument("--rtt-window", type=int, default=100, help="outstanding raw round trips (default 100)")
    ap.add_argument("--rtt-samples", type=int, default=1000, help="one-at-a-time raw round trips (default 1000)")
    ap.add_argument("--payload", type=int, default=300, help="raw payload bytes (default 300)")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every child and remove the temp dir.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    if args.json:
        print(json.dumps(finite(result), ensure_ascii=False))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
