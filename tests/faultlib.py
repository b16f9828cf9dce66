"""Fault injection on real processes: a broker of our own, a control plane, three timed agents, a
submitter that streams jobs, faults (SIGKILL, SIGSTOP, broker restart), and the durability check.

The promise checked: a job is durable once submit returns 2xx; every accepted job ends ``done``
(or ``failed`` with every attempt's reason), none is done twice, each stored audio is intact.
Used by tests/faults/test_faults.py and benchmarks/faults.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import signal
import threading
import time
import uuid
import wave
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from services import ADMIN_TOKEN, PostgresServer, http
from sqlalchemy import create_engine, text

from edge_agent.engines.benchmark_only import timed_pcm
from voicefleet.broker import MosquittoBroker
from voicefleet.credentials import auth_headers
from voicefleet_cli.onebox import Cluster
from voicefleet_cli.replicaset import ReplicaSet

TERMINAL = ("done", "failed", "cancelled")
TIMED_S_PER_CHAR = 0.06  # the timed engine's default: audio seconds per character
TIMED_SAMPLE_RATE = 1000
KEEPALIVE_S = 2  # small, so a SIGSTOPped agent's last will fires after ~3 s
HEARTBEAT_TIMEOUT_S = 2
CUT_OFF_S = 5.0  # longer than 1.5 x keep-alive and the heartbeat timeout
BROKER_DOWN_S = 3.0
DATABASE_DOWN_S = 10.0
# Mandarin filler: each job's text is a slice of it, 10-60 characters.
_SOURCE = "今天下午三点提醒我开会请在会议前准备好材料并通知所有同事明天上午九点检查邮件记得带上笔记本电脑和充电器" * 3
# (device id suffix, role, slots): a cloud/edge mix
FLEET = (("cloud-a", "cloud", 2), ("edge-b", "edge", 2), ("edge-c", "edge", 2))
# Ten agents, for the replicas' scenario (one slot each: what ten real boxes would be)
FLEET_OF_TEN = tuple((f"cloud-{i}", "cloud", 1) for i in range(2)) + tuple((f"edge-{i}", "edge", 1) for i in range(8))


def job_text(rng: random.Random) -> str:
    n = rng.randint(10, 60)
    start = rng.randrange(0, len(_SOURCE) - n)
    return _SOURCE[start:start + n]


def expected_samples(job_text_: str) -> int:
    """What the timed engine produces for a text (see edge_agent/engines/benchmark_only.py)."""
    return round(len(job_text_.strip()) * TIMED_S_PER_CHAR * TIMED_SAMPLE_RATE)


@dataclass
class Fault:
    kind: str
    target: str
    started: float  # wall clock (the control plane's job timestamps are wall clock too)
    ended: float
    # the next job done after this moment marks recovery: the strike itself for a fault whose effect is
    # instant (a kill), the restart for a broker (nothing can complete while it is down)
    recover_from: float = 0.0
    recover_s: float | None = None  # fault start -> the next job done after recover_from


class Submitter(threading.Thread):
    """Posts ``total`` jobs, one every ``interval_s``; records each id the API accepted (2xx).
    Refusals and connection errors while the control plane is down are counted, never retried
    blindly: a refused job was never promised."""

    def __init__(self, api: str, total: int, interval_s: float, seed: int = 0, *, until_accepted: bool = False):
        super().__init__(name="submitter", daemon=True)
        self.api, self.total, self.interval_s = api, total, interval_s
        self.until_accepted = until_accepted  # keep posting until ``total`` were accepted, not just posted
        self.rng = random.Random(seed)
        self.accepted: dict[str, str] = {}  # id -> text
        self.refused: Counter[str] = Counter()
        self.refusal_texts: dict[str, str] = {}  # status -> the first refusal's body, to tell why
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10, headers=auth_headers(ADMIN_TOKEN)) as client:
            sent = 0
            next_at = time.monotonic()
            while (len(self.accepted) if self.until_accepted else sent) < self.total and not self.stop_event.is_set():
                self.stop_event.wait(max(0.0, next_at - time.monotonic()))
                next_at += self.interval_s
                sent += 1
                self._post(client, job_text(self.rng))

    def _post(self, client: httpx.Client, body: str) -> None:
        try:
            resp = client.post(f"{self.api}/v1/jobs", json={"text": body, "lang": "zh"})
        except httpx.HTTPError as exc:
            self.refused[type(exc).__name__] += 1
            return
        if resp.is_success:
            self.accepted[resp.json()["id"]] = body
        else:
            self.refused[str(resp.status_code)] += 1
            self.refusal_texts.setdefault(str(resp.status_code), resp.text[:300])


class Harness:
    """Broker (own dir and port, persistent), control plane on ``database_url``, three timed agents."""

    def __init__(self, workdir: Path, database_url: str, *, rtf: float = 0.2, pg: PostgresServer | None = None,
                 replicas: int = 1, fleet: tuple[tuple[str, str, int], ...] = FLEET):
        self.workdir = Path(workdir)
        self.database_url = database_url
        self.pg = pg  # the server behind database_url, when this harness may stop it (database_outage)
        self.replicas, self.fleet = replicas, fleet
        self.rtf = rtf
        self.tag = uuid.uuid4().hex[:6]
        self.broker = MosquittoBroker(self.workdir / "broker")
        self.cluster: Cluster | None = None
        self.agent_env: dict[str, dict[str, str]] = {}
        self.faults: list[Fault] = []
        self.fault_log: list[str] = []

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Harness:
        self.broker.start()
        env = {"VOICEFLEET_MQTT_KEEPALIVE_S": str(KEEPALIVE_S), "VOICEFLEET_MQTT_SESSION_EXPIRY_S": "600",
               "VOICEFLEET_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S), "VOICEFLEET_TELEMETRY_INTERVAL_S": "0.3",
               "VOICEFLEET_LOG_LEVEL": "INFO"}
        if self.replicas > 1:  # behind HAProxy, as past one machine
            self.cluster = ReplicaSet(self.workdir / "home", mqtt_url=self.broker.url,
                                      database_url=self.database_url, replicas=self.replicas, env=env)
        else:
            self.cluster = Cluster(self.workdir / "home", mqtt_url=self.broker.url,
                                   env=env | {"VOICEFLEET_DATABASE_URL": self.database_url,
                                              "VOICEFLEET_CONTROL_ID": f"cp-{self.tag}"})
        self.cluster.start_control_plane()
        for name, role, slots in self.fleet:
            self._start_agent(f"{name}-{self.tag}", role, slots)
        return self

    def stop(self) -> None:
        if self.cluster is not None:
            for device in self.cluster.agents:  # a SIGSTOPped agent cannot handle SIGTERM
                _signal(self.cluster.agents[device], signal.SIGCONT)
            self.cluster.stop()
        self.broker.stop()

    def __enter__(self) -> Harness:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def c(self) -> Cluster:
        assert self.cluster is not None
        return self.cluster

    @property
    def api(self) -> str:
        return self.c.api

    @property
    def devices(self) -> list[str]:
        return list(self.agent_env)

    def _start_agent(self, device: str, role: str, slots: int, *, wait: bool = True) -> None:
        env = {"VOICEFLEET_TIMED_RTF": str(self.rtf), "VOICEFLEET_MAX_CONCURRENCY": str(slots),
               "VOICEFLEET_DRAIN_TIMEOUT_S": "1", "VOICEFLEET_ROLE": role}
        self.agent_env[device] = env
        self.c.start_agent(device, role=role, engine="timed", wait=wait, **{k: v for k, v in env.items()
                                                                           if k != "VOICEFLEET_ROLE"})
        if wait:
            wait_for(lambda: self.device(device).get("eligible"), f"{device} eligible", 30)

    def restart_agent(self, device: str) -> None:
        env = self.agent_env[device]
        slots = int(env["VOICEFLEET_MAX_CONCURRENCY"])
        self._start_agent(device, env["VOICEFLEET_ROLE"], slots, wait=False)

    def device(self, device: str) -> dict[str, Any]:
        try:
            return http.get(f"{self.api}/v1/devices/{device}", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return {}

    # -- faults -----------------------------------------------------------------------------

    def busy_agent(self, rng: random.Random, timeout_s: float = 10) -> str:
        """An agent that has a job in flight now (mid-job is the interesting moment to strike)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            busy = [d for d in self.devices if self.c.agents[d].poll() is None and self.device(d).get("inflight")]
            if busy:
                return rng.choice(busy)
            time.sleep(0.02)
        return rng.choice([d for d in self.devices if self.c.agents[d].poll() is None])

    def kill_agent(self, rng: random.Random, *, restart_after_s: float = 2.0) -> Fault:
        """SIGKILL an agent mid-job: its last will marks it offline and its jobs are requeued; it comes
        back later with a new boot id (the fleet keeps its capacity for the rest of the run)."""
        device = self.frozen_mid_job(rng)
        t0 = time.time()
        self.c.agents[device].kill()  # SIGKILL ends a stopped process too
        self.c.agents[device].wait(10)
        time.sleep(restart_after_s)
        self.restart_agent(device)
        return self._record("agent_sigkill", device, t0, recover_from=t0)

    def frozen_mid_job(self, rng: random.Random, tries: int = 20) -> str:
        """An agent stopped (SIGSTOP) while the control plane holds a job of it unfinished: frozen, it
        can send nothing more, so once its jobs in flight hold still across a few reads, every one
        of them is truly mid-run (a busy agent caught live may have sent its "done" a moment ago)."""
        for _ in range(tries):
            device = self.busy_agent(rng)
            proc = self.c.agents[device]
            _signal(proc, signal.SIGSTOP)
            if self._settled_inflight(device) > 0:
                return device
            _signal(proc, signal.SIGCONT)
        return device  # give the caller the last one: its check then says that nothing was caught

    def _settled_inflight(self, device: str, reads: int = 3, gap_s: float = 0.2, timeout_s: float = 10) -> int:
        """The device's jobs in flight once the same count was read ``reads`` times in a row."""
        seen: list[int] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = (seen + [self.device(device).get("inflight", -1)])[-reads:]
            if len(seen) == reads and len(set(seen)) == 1 and seen[0] >= 0:
                return seen[0]
            time.sleep(gap_s)
        return 0

    def kill_control_plane(self, rng: random.Random, *, down_s: float = 1.0) -> Fault:
        """SIGKILL the control plane and start it again on the same database and MQTT session."""
        t0 = time.time()
        self.c.control.kill()
        self.c.control.wait(10)
        time.sleep(down_s)
        self.c.start_control_plane()
        return self._record("control_plane_sigkill", "control-plane", t0, recover_from=t0)

    def leader(self) -> int | None:
        assert isinstance(self.cluster, ReplicaSet)
        return self.cluster.leader()

    def kill_leader(self, rng: random.Random, *, down_s: float = 3.0) -> Fault:
        """SIGKILL the leading replica; another takes the lead (and the broker's session); the killed one
        starts again after ``down_s`` and follows."""
        assert isinstance(self.cluster, ReplicaSet)
        wait_for(lambda: self.leader() is not None, "a leader")
        killed = self.leader()
        t0 = time.time()
        self.cluster.kill_replica(killed)
        self.killed_leader = killed
        wait_for(lambda: self.leader() not in (None, killed), "another replica leading", timeout_s=30)
        self.takeover_s = time.time() - t0
        time.sleep(down_s)
        self.cluster.start_replica(killed)
        return self._record("leader_sigkill", f"cp-{killed}", t0, recover_from=t0)

    def queued_by_replica(self) -> list[int]:
        """How many jobs each replica accepted (its log's ``job … queued`` lines, kept across restarts)."""
        assert isinstance(self.cluster, ReplicaSet)
        return [len(re.findall(r"voicefleet\.jobs: job \w+ queued$", (self.cluster.home / f"control-plane-{i}.log")
                               .read_text(errors="replace"), re.M)) for i in range(len(self.cluster.replicas))]

    def restart_broker(self, rng: random.Random, *, down_s: float = BROKER_DOWN_S) -> Fault:
        """Stop Mosquitto (SIGTERM: it saves its persistence), wait, start it on the same port."""
        t0 = time.time()
        self.broker.stop()
        time.sleep(down_s)
        self.broker.start()
        return self._record("broker_restart", "mosquitto", t0)

    def cut_off_agent(self, rng: random.Random, *, cut_s: float = CUT_OFF_S) -> Fault:
        """SIGSTOP an agent for longer than its keep-alive: the broker fires its last will, the control
        plane requeues its jobs; after SIGCONT it reconnects and its stale results must be ignored."""
        device = self.busy_agent(rng)
        proc = self.c.agents[device]
        t0 = time.time()
        _signal(proc, signal.SIGSTOP)
        try:
            time.sleep(cut_s)
        finally:
            _signal(proc, signal.SIGCONT)
        return self._record("agent_sigstop", device, t0, recover_from=t0)

    def stop_database(self, rng: random.Random, *, down_s: float = DATABASE_DOWN_S) -> Fault:
        """Stop PostgreSQL under load and start it again: the control plane must hold what it could not
        commit (unacked) and refuse new work with 503 meanwhile, then carry on with nothing lost."""
        if self.pg is None:
            raise RuntimeError("database_outage needs a harness built with its own PostgresServer (pg=...)")
        t0 = time.time()
        self.pg.pause()
        time.sleep(down_s)
        self.pg.resume()
        return self._record("database_outage", "postgresql", t0)

    def _record(self, kind: str, target: str, t0: float, *, recover_from: float | None = None) -> Fault:
        end = time.time()
        fault = Fault(kind, target, started=t0, ended=end, recover_from=end if recover_from is None else recover_from)
        self.faults.append(fault)
        self.fault_log.append(f"{kind} {target} at {t0:.3f} for {fault.ended - t0:.2f}s")
        return fault

    def fault_by_kind(self, kind: str) -> Callable[[random.Random], Fault]:
        return {"agent_sigkill": self.kill_agent, "control_plane_sigkill": self.kill_control_plane,
                "broker_restart": self.restart_broker, "agent_sigstop": self.cut_off_agent,
                "database_outage": self.stop_database, "leader_sigkill": self.kill_leader}[kind]

    # -- waiting and checking ---------------------------------------------------------------

    def wait_terminal(self, ids: list[str], timeout_s: float) -> dict[str, dict]:
        """Every job's detail once all are terminal (or the timeout passes: the rest stay as they are)."""
        details: dict[str, dict] = {}
        pending = list(ids)
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=10, headers=auth_headers(ADMIN_TOKEN)) as client:
            while pending and time.monotonic() < deadline:
                still = []
                for job_id in pending:
                    job = _get_json(client, f"{self.api}/v1/jobs/{job_id}")
                    if job is not None and job.get("state") in TERMINAL:
                        details[job_id] = job
                    else:
                        still.append(job_id)
                        if job is not None:
                            details[job_id] = job
                pending = still
                if pending:
                    time.sleep(0.5)
        return details


@dataclass
class Report:
    jobs: int = 0
    done: int = 0
    failed: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    failed_without_reasons: list[str] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    refusal_texts: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    untracked_nonterminal: int = 0  # jobs in the database that the submitter never heard about, not terminal
    failure_reasons: Counter[str] = field(default_factory=Counter)  # failed jobs' attempts, by reason

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.corrupt or self.failed_without_reasons)

    def recover_times(self) -> list[float]:
        return sorted(f.recover_s for f in self.faults if f.recover_s is not None)

    def summary(self) -> dict[str, Any]:
        rec = self.recover_times()
        return {"jobs": self.jobs, "done": self.done, "failed": self.failed, "faults": len(self.faults),
                "faults_by_kind": dict(Counter(f.kind for f in self.faults)), "lost": len(self.lost),
                "duplicated": len(self.duplicated), "corrupt": len(self.corrupt),
                "failed_without_reasons": len(self.failed_without_reasons), "refused": self.refused,
                "failure_reasons": dict(self.failure_reasons.most_common(10)),
                "untracked_nonterminal": self.untracked_nonterminal,
                "recover_s_p50": round(percentile(rec, 50), 3) if rec else None,
                "recover_s_max": round(rec[-1], 3) if rec else None,
                "recover_s": [round(r, 3) for r in [f.recover_s for f in self.faults] if r is not None]}

    def describe(self) -> str:
        s = self.summary()
        lines = [f"jobs {s['jobs']} (done {s['done']}, failed {s['failed']}), faults {s['faults']} "
                 f"{s['faults_by_kind']}, lost {s['lost']}, duplicated {s['duplicated']}, corrupt {s['corrupt']}, "
                 f"failed without reasons {s['failed_without_reasons']}, refused at submit {s['refused']}"]
        for f in self.faults:
            rec = f"{f.recover_s:.2f}s" if f.recover_s is not None else "never"
            lines.append(f"  {f.kind:<22} {f.target:<16} lasted {f.ended - f.started:5.2f}s, recovered in {rec}")
        for status, body in self.refusal_texts.items():
            lines.append(f"  first {status} at submit: {body}")
        for name in ("lost", "duplicated", "corrupt", "failed_without_reasons"):
            if getattr(self, name):
                lines.append(f"  {name}: {getattr(self, name)[:20]}")
        return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def check(h: Harness, sub: Submitter, *, timeout_s: float = 120) -> Report:
    """Wait for every accepted job to end, then hold each one against the promise."""
    accepted = dict(sub.accepted)
    details = h.wait_terminal(list(accepted), timeout_s)
    artifacts = _artifacts(h.database_url)
    report = Report(jobs=len(accepted), refused=dict(sub.refused), refusal_texts=dict(sub.refusal_texts),
                    faults=list(h.faults))
    with httpx.Client(timeout=30, headers=auth_headers(ADMIN_TOKEN)) as client:
        for job_id, body in accepted.items():
            _check_job(client, h.api, job_id, body, details.get(job_id), artifacts.get(job_id, []), report)
    report.untracked_nonterminal = _untracked_nonterminal(h.database_url, set(accepted))
    _recovery_times(report.faults, [d.get("finished_at") for d in details.values() if d.get("state") == "done"])
    return report


def _check_job(client: httpx.Client, api: str, job_id: str, body: str, job: dict | None,
               arts: list[dict], report: Report) -> None:
    if job is None or job.get("state") not in ("done", "failed"):
        report.lost.append(job_id)  # missing, or never finished (cancelled is never asked for here)
        return
    kinds = [e["kind"] for e in job["events"]]
    if kinds.count("done") > 1 or len(arts) > 1:
        report.duplicated.append(job_id)
    if job["state"] == "failed":
        report.failed += 1
        report.failure_reasons.update(_attempt_reasons(job))
        if not _every_attempt_has_reason(job):
            report.failed_without_reasons.append(job_id)
        return
    report.done += 1
    if kinds.count("done") != 1 or len(arts) != 1 or not _audio_intact(client, api, job_id, body, arts[0]):
        report.corrupt.append(job_id)


def _attempt_reasons(job: dict) -> list[str]:
    """Each failed attempt's reason, as ``code: text``."""
    return [f"{(e.get('detail') or {}).get('code', '?')}: {(e.get('detail') or {}).get('text', '')}"[:160]
            for e in job["events"] if e["kind"] == "attempt_failed"]


def _every_attempt_has_reason(job: dict) -> bool:
    reasons = {e["attempt"] for e in job["events"]
               if e["kind"] == "attempt_failed" and (e.get("detail") or {}).get("text")}
    return all(a in reasons for a in range(1, job["attempt"] + 1))


def _audio_intact(client: httpx.Client, api: str, job_id: str, body: str, art: dict) -> bool:
    """A valid WAV holding exactly what the timed engine makes for this job's text (its pattern tells
    one job, and one position, from another), and hashing to what was stored."""
    resp = client.get(f"{api}/v1/jobs/{job_id}/audio")
    if resp.status_code != 200:
        return False
    try:
        with wave.open(io.BytesIO(resp.content)) as w:
            pcm = w.readframes(w.getnframes())
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
    except (wave.Error, EOFError):
        return False
    samples = expected_samples(body)
    return (rate == TIMED_SAMPLE_RATE and width == 2 and channels == 1 and pcm == timed_pcm(body.strip(), 0, samples)
            and art["samples"] == samples and art["bytes"] == len(pcm)
            and hashlib.sha256(pcm).hexdigest() == art["sha256"])


def _artifacts(database_url: str) -> dict[str, list[dict]]:
    """Every stored audio row, by job (the API does not expose the checksum; the database has it)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT job_id, samples, bytes, sha256 FROM audioartifact")).mappings().all()
    finally:
        engine.dispose()
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["job_id"], []).append(dict(row))
    return out


def _untracked_nonterminal(database_url: str, accepted: set[str]) -> int:
    """Jobs committed whose 2xx never reached the submitter (killed mid-response): not promised,
    but they should still not be left hanging."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id FROM job WHERE state NOT IN ('done', 'failed', 'cancelled')")).all()
    finally:
        engine.dispose()
    return sum(1 for (job_id,) in rows if job_id not in accepted)


def _recovery_times(faults: list[Fault], finished: list[float | None]) -> None:
    done_at = sorted(t for t in finished if t is not None)
    for f in faults:
        after = next((t for t in done_at if t > f.recover_from), None)
        f.recover_s = after - f.started if after is not None else None


def _get_json(client: httpx.Client, url: str) -> dict | None:
    try:
        resp = client.get(url)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def _signal(proc, sig: int) -> None:
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


def wait_for(check_: Callable[[], Any], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check_():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_scenario(h: Harness, *, jobs: int, interval_s: float, faults: list[tuple[float, str]],
                 seed: int = 0, timeout_s: float = 120, until_accepted: bool = False) -> Report:
    """Stream ``jobs`` jobs; inject each (offset seconds from the start, kind) fault in order; check."""
    rng = random.Random(seed)
    sub = Submitter(h.api, jobs, interval_s, seed=seed, until_accepted=until_accepted)
    t0 = time.monotonic()
    sub.start()
    try:
        for at, kind in sorted(faults):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            h.fault_by_kind(kind)(rng)
    finally:
        sub.join()
    return check(h, sub, timeout_s=timeout_s)
