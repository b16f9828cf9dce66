#!/usr/bin/env python
"""Scale-out benchmark: one control plane against three replicas, side by side in one run, each behind
HAProxy on the same PostgreSQL database server and broker, with the same K zero-work (``tone``) agents.

For each: throughput with single POSTs over C connections (jobs/s from the first submit to the last
done, through the proxy), submit-to-first-chunk at the client (a job at a time: POST, then the audio
stream's first PCM byte, the HTTP legs included), CPU seconds per job of the control planes together
and per replica, and of the whole box by part (client, agents, broker, proxy, database): with every core
busy, that is what bounds jobs/s. With three replicas, the time to recover from the leader's death: SIGKILL, then a job
submitted every 0.1 s until one submitted after the kill is done.

Printed: the table, then the ratios 3 replicas : 1 (CPU per job: target at most 1.3; the box's
jobs/s with single POSTs: target at least 500 at both) and the recovery time (target at most 5 s).
``--json`` prints one JSON object. Needs PostgreSQL (``--pg-url``, a server this user may create
databases on; default the local one) and Debian's haproxy.

``python benchmarks/scale.py [--json] [--jobs 2000] [--agents 4] [--slots 8] [--connections 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import httpx  # noqa: E402
import psycopg  # noqa: E402

from benchmarks.dispatch import TEXT, throughput  # noqa: E402
from benchmarks.fleet import ROOT as CHECKOUT  # noqa: E402
from benchmarks.fleet import CpuMeter, log_tails, online  # noqa: E402
from benchmarks.report import AUTH  # noqa: E402
from benchmarks.stats import dist_ms  # noqa: E402
from voicefleet.broker import MosquittoBroker  # noqa: E402
from voicefleet_cli.replicaset import ReplicaSet  # noqa: E402

TARGET_CPU_RATIO = 1.3
TARGET_RECOVERY_S = 5.0
TARGET_JOBS_PER_S = 500.0


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def new_database(pg_url: str) -> str:
    """A fresh database on the server ``pg_url`` (libpq form) names, as a SQLAlchemy URL."""
    name = f"vf_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_url.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


class Setup:
    """N replicas behind HAProxy and K tone agents, as child processes."""

    def __init__(self, home: Path, broker_url: str, database_url: str, replicas: int, agents: int, slots: int):
        pythonpath = os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))
        self.set = ReplicaSet(home, mqtt_url=broker_url, database_url=database_url,
                              replicas=replicas, env={"VOICEFLEET_LOG_LEVEL": "WARNING", "PYTHONPATH": pythonpath})
        self.api = self.set.api
        self.devices = [f"scale-{replicas}-{i}" for i in range(agents)]
        self.slots = slots

    def start(self) -> None:
        self.set.start_control_plane()
        for dev in self.devices:
            self.set.start_agent(dev, role="cloud", engine="tone", wait=False,
                                 VOICEFLEET_MAX_CONCURRENCY=str(self.slots))
        self.set.wait(lambda: online(self.api, self.devices) == len(self.devices), "all agents online")

    def replica_pids(self) -> list[int]:
        return [p.pid for p in self.set.replicas if p is not None]

    def leader(self) -> int | None:
        return self.set.leader()


async def first_chunks(api: str, *, count: int, warmup: int = 5) -> dict[str, Any]:
    """Submit to the first PCM byte at the client, a job at a time, through the proxy."""
    out: list[float] = []
    async with httpx.AsyncClient(base_url=api, timeout=30, headers=AUTH) as client:
        for i in range(warmup + count):
            t0 = time.perf_counter()
            r = await client.post("/v1/jobs", json={"text": TEXT, "lang": "zh"})
            r.raise_for_status()
            first = None
            async with client.stream("GET", f"/v1/jobs/{r.json()['id']}/audio") as resp:
                seen = 0
                async for block in resp.aiter_raw():
                    seen += len(block)
                    if first is None and seen > 44:  # past the WAV header: audio
                        first = time.perf_counter() - t0
            if i >= warmup and first is not None:
                out.append(first)
    return dist_ms(out)


def recovery(setup: Setup) -> dict[str, Any]:
    """SIGKILL the leader; submit a job every 0.1 s; seconds until one submitted after the kill is done."""
    killed = setup.leader()
    t_kill = time.perf_counter()
    setup.set.kill_replica(killed)
    with httpx.Client(base_url=setup.api, timeout=10, headers=AUTH) as client:
        pending: list[str] = []
        while time.perf_counter() - t_kill < 60:
            try:
                r = client.post("/v1/jobs", json={"text": TEXT, "lang": "zh"})
                if r.status_code == 201:
                    pending.append(r.json()["id"])
            except httpx.HTTPError:
                pass
            for job_id in list(pending):
                try:
                    if client.get(f"/v1/jobs/{job_id}").json().get("state") == "done":
                        recovered, leader = round(time.perf_counter() - t_kill, 2), setup.leader()
                        return {"killed": f"cp-{killed}", "recovery_s": recovered,
                                "new_leader": None if leader is None else f"cp-{leader}"}
                except (httpx.HTTPError, ValueError):
                    pass
            time.sleep(0.1)
    return {"killed": f"cp-{killed}", "recovery_s": None}


def box_share(cpu_s: dict[str, float], control: float, done: int) -> dict[str, Any]:
    """Where the whole machine's CPU went, in ms per job: what bounds jobs/s once every core is busy.
    ``control`` is the control planes' CPU seconds together; ``database_and_rest`` the box's busy time less
    the measured processes (mostly PostgreSQL's backends)."""
    parts = {"control_planes": control} | {k: cpu_s[k] for k in ("client", "agents", "broker", "proxy")}
    parts["database_and_rest"] = max(cpu_s["box"] - sum(parts.values()), 0.0)
    box_ms = 1000 * cpu_s["box"] / done
    cpus = os.cpu_count() or 1
    return {"cpu_ms_per_job": round(box_ms, 3), "busy": round(cpu_s["box"] / (cpu_s["wall_s"] * cpus), 3),
            "ceiling_jobs_per_s": round(1000 * cpus / box_ms, 1),
            "ms_per_job": {k: round(1000 * v / done, 3) for k, v in parts.items()}}


def measure_one(tmp: Path, broker: MosquittoBroker, pg_url: str, replicas: int, args: argparse.Namespace) -> dict:
    setup = Setup(tmp / f"r{replicas}", broker.url, new_database(pg_url), replicas, args.agents, args.slots)
    try:
        log(f"{replicas} replica(s) behind HAProxy, {args.agents} tone agents")
        setup.start()
        meter = CpuMeter({f"cp-{i}": [pid] for i, pid in enumerate(setup.replica_pids())}
                         | {"proxy": [setup.set.proxy.pid], "broker": [broker.pid] if broker.pid else [],
                            "agents": [p.pid for p in setup.set.agents.values()], "client": [os.getpid()]},
                         box=True)
        log(f"throughput: {args.jobs} single POSTs over {args.connections} connections")
        tput = asyncio.run(throughput(setup.api, jobs=args.jobs, conc=args.connections, meter=meter))
        control_cpu = sum(v for k, v in tput["cpu_s"].items() if k.startswith("cp-"))
        done = max(tput["done"], 1)
        result = {"replicas": replicas, "jobs_per_s": tput["completed_per_s"], "accepted": tput["accepted"],
                  "done": tput["done"], "lost": tput["lost"], "submit_errors": tput["submit_errors"],
                  "control_cpu_ms_per_job": round(1000 * control_cpu / done, 3),
                  "per_replica_cpu_ms_per_job": {k: round(1000 * v / done, 3) for k, v in tput["cpu_s"].items()
                                                 if k.startswith("cp-")},
                  "proxy_cpu_ms_per_job": round(1000 * tput["cpu_s"]["proxy"] / done, 3),
                  "box": box_share(tput["cpu_s"], control_cpu, done)}
        log(f"first chunk at the client: {args.latency_jobs} jobs one at a time")
        result["first_chunk_at_client"] = asyncio.run(first_chunks(setup.api, count=args.latency_jobs))
        if replicas > 1:
            log("recovery: SIGKILL the leader")
            result["recovery"] = recovery(setup)
        return result
    except BaseException:
        log(f"child logs:\n{log_tails(setup.set.home, 15)}")
        raise
    finally:
        setup.set.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vf-scale-") as tmp:
        broker = MosquittoBroker(Path(tmp) / "broker").start()
        try:
            one = measure_one(Path(tmp), broker, args.pg_url, 1, args)
            three = measure_one(Path(tmp), broker, args.pg_url, args.replicas, args)
        finally:
            broker.stop()
    cpu_ratio = three["control_cpu_ms_per_job"] / one["control_cpu_ms_per_job"]
    rec = three.get("recovery", {}).get("recovery_s")
    return {
        "config": {"jobs": args.jobs, "agents": args.agents, "slots": args.slots, "connections": args.connections,
                   "latency_jobs": args.latency_jobs, "replicas": args.replicas, "cpus": os.cpu_count(),
                   "wall_s": round(time.perf_counter() - t0, 1)},
        "one": one, "many": three,
        "ratios": {"cpu_per_job_many_over_one": round(cpu_ratio, 3),
                   "jobs_per_s_many_over_one": round(three["jobs_per_s"] / max(one["jobs_per_s"], 1e-9), 3)},
        "targets": {"cpu_per_job_ratio": {"target": TARGET_CPU_RATIO, "met": cpu_ratio <= TARGET_CPU_RATIO},
                    "recovery_s": {"target": TARGET_RECOVERY_S, "met": rec is not None and rec <= TARGET_RECOVERY_S},
                    "jobs_per_s_one": {"target": TARGET_JOBS_PER_S, "met": one["jobs_per_s"] >= TARGET_JOBS_PER_S},
                    "jobs_per_s_many": {"target": TARGET_JOBS_PER_S,
                                        "met": three["jobs_per_s"] >= TARGET_JOBS_PER_S}},
    }


def print_table(r: dict[str, Any]) -> None:
    c = r["config"]
    print(f"voicefleet scale-out: 1 and {c['replicas']} control planes behind HAProxy, {c['agents']} tone agents x "
          f"{c['slots']} slots, {c['jobs']} single POSTs over {c['connections']} connections, {c['cpus']} CPUs, "
          f"{c['wall_s']} s")
    print(f"{'replicas':>8}{'jobs/s':>9}{'done':>7}{'lost':>6}{'cp CPU ms/job':>15}{'proxy ms/job':>14}"
          f"{'first chunk p50':>17}{'p99 ms':>8}  per replica CPU ms/job")
    for row in (r["one"], r["many"]):
        fc = row["first_chunk_at_client"]
        print(f"{row['replicas']:>8}{row['jobs_per_s']:>9.1f}{row['done']:>7}{row['lost']:>6}"
              f"{row['control_cpu_ms_per_job']:>15.2f}{row['proxy_cpu_ms_per_job']:>14.2f}{fc['p50_ms']:>17.1f}"
              f"{fc['p99_ms']:>8.1f}  {row['per_replica_cpu_ms_per_job']}")
    for row in (r["one"], r["many"]):
        b = row["box"]
        print(f"  {row['replicas']} replica(s), the whole box: {b['cpu_ms_per_job']:.2f} CPU ms/job, "
              f"{100 * b['busy']:.0f} % busy, so at most {b['ceiling_jobs_per_s']:.0f} jobs/s here; "
              f"ms/job by part: {b['ms_per_job']}")
    rec = r["many"].get("recovery", {})
    print(f"ratios {c['replicas']}:1: CPU per job {r['ratios']['cpu_per_job_many_over_one']}, "
          f"jobs/s {r['ratios']['jobs_per_s_many_over_one']}; recovery after the leader's SIGKILL: "
          f"{rec.get('recovery_s')} s ({rec.get('killed')} -> {rec.get('new_leader')})")
    for name, t in r["targets"].items():
        print(f"  {name}: target {t['target']} -> {'PASS' if t['met'] else 'MISS'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--pg-url", help="a PostgreSQL server's maintenance database (libpq URL); one database is made "
                    "per setup")
    ap.add_argument("--replicas", type=int, default=3, help="replicas in the second setup (default 3)")
    ap.add_argument("--jobs", type=int, default=2000, help="jobs in each throughput run (default 2000)")
    ap.add_argument("--agents", type=int, default=4, help="tone agents (default 4)")
    ap.add_argument("--slots", type=int, default=8, help="VOICEFLEET_MAX_CONCURRENCY per agent (default 8)")
    ap.add_argument("--connections", type=int, default=16, help="concurrent HTTP connections (default 16)")
    ap.add_argument("--latency-jobs", type=int, default=100, help="jobs one at a time for first chunk (default 100)")
    args = ap.parse_args(argv)
    args.pg_url = args.pg_url or os.environ.get("VOICEFLEET_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    r = run(args)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print_table(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
