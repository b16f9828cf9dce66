"""Fault injection on real processes, on PostgreSQL: an agent SIGKILLed mid-job, the control plane
SIGKILLed and restarted, Mosquitto restarted, an agent cut off past its keep-alive, and a mix.

After each, every accepted job must end done (or failed with every attempt's reason), none done
twice, each stored audio intact (tests/faultlib.py holds the harness and the check)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultlib import FLEET_OF_TEN, Harness, Report, run_scenario
from services import PostgresServer, http

pytestmark = pytest.mark.timeout(180)

JOBS = 60
INTERVAL_S = 0.15  # 60 jobs over ~9 s: the faults land while jobs are queued and running


@pytest.fixture
def harness(pg_server: PostgresServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    url = pg_server.create_database(f"f_{stem}_{uuid.uuid4().hex[:8]}")
    with Harness(tmp_path, url) as h:
        yield h


def assert_promise_kept(report: Report, h: Harness, kinds: set[str]) -> None:
    print(f"\n{report.describe()}")
    assert report.jobs >= JOBS // 3, f"too few jobs accepted to mean anything: {report.summary()}"
    assert {f.kind for f in report.faults} == kinds
    assert report.ok, f"{report.describe()}\nlogs in {h.c.home}"
    assert report.done + report.failed == report.jobs
    assert all(f.recover_s is not None for f in report.faults), report.describe()


def test_agent_sigkill_mid_job(harness: Harness):
    report = run_scenario(harness, jobs=JOBS, interval_s=INTERVAL_S, faults=[(3.0, "agent_sigkill")], seed=1)
    assert_promise_kept(report, harness, {"agent_sigkill"})
    assert requeued_from(harness, report.faults[0].target), "no job was caught mid-run on the killed agent"


def test_control_plane_sigkill_and_restart(harness: Harness):
    # Until JOBS are accepted: the restart's length (10 s on a loaded box) must not decide how many jobs
    # test the promise.
    report = run_scenario(harness, jobs=JOBS, interval_s=INTERVAL_S, faults=[(3.0, "control_plane_sigkill")],
                          seed=2, until_accepted=True)
    assert_promise_kept(report, harness, {"control_plane_sigkill"})


def test_broker_restart(harness: Harness):
    # While the broker is down every device looks away; within VOICEFLEET_OFFLINE_GRACE_S submit
    # still accepts and the jobs wait. Submit for longer so that plenty run after it is back.
    report = run_scenario(harness, jobs=JOBS, interval_s=0.25, faults=[(2.0, "broker_restart")], seed=3)
    assert_promise_kept(report, harness, {"broker_restart"})


def test_agent_cut_off_past_keepalive(harness: Harness):
    report = run_scenario(harness, jobs=JOBS, interval_s=INTERVAL_S, faults=[(2.0, "agent_sigstop")], seed=4)
    assert_promise_kept(report, harness, {"agent_sigstop"})
    assert requeued_from(harness, report.faults[0].target), "no job was taken back from the cut-off agent"


def test_mixed_faults(harness: Harness):
    kinds = ["agent_sigkill", "broker_restart", "control_plane_sigkill", "agent_sigstop"]
    faults = [(2.0 + 3.0 * i, kind) for i, kind in enumerate(kinds)]
    report = run_scenario(harness, jobs=100, interval_s=0.15, faults=faults, seed=5)
    assert_promise_kept(report, harness, set(kinds))


def requeued_from(h: Harness, device: str) -> list[dict]:
    """Jobs whose attempt on ``device`` was taken back (device lost, or handed off by hedging when
    it stalled) and that then ran again on a later attempt."""
    out = []
    for job in http.get(f"{h.api}/v1/jobs", params={"limit": 1000}).json():
        detail = http.get(f"{h.api}/v1/jobs/{job['id']}").json()
        lost_on = [e["attempt"] for e in detail["events"] if e["kind"] in ("attempt_failed", "returned")
                   and e["device_id"] == device]
        if lost_on and detail["attempt"] > min(lost_on):
            out.append(detail)
    return out


def test_database_outage_under_load(tmp_path: Path):
    """PostgreSQL stopped for 10 s while jobs stream in and run: what the control plane could not commit
    it holds unacked, new work is refused with 503 (nothing half-written), and when the database is
    back every accepted job ends done once with its own audio."""
    server = PostgresServer()
    if server.external:
        pytest.skip("an outage needs a PostgreSQL server this test starts and stops itself")
    with server:
        url = server.create_database(f"f_outage_{uuid.uuid4().hex[:8]}")
        with Harness(tmp_path, url, pg=server) as h:
            report = run_scenario(h, jobs=JOBS, interval_s=INTERVAL_S, faults=[(2.0, "database_outage")], seed=6,
                                  until_accepted=True)
            assert_promise_kept(report, h, {"database_outage"})
            assert report.failed == 0, report.describe()
            assert set(report.refused) == {"503"}, report.describe()  # refused while it was down, and only then
            assert "database_unavailable" in report.refusal_texts["503"]


@pytest.mark.timeout(480)  # thirteen processes and three faults, on a box shared with other tests
def test_three_replicas_behind_haproxy_survive_a_leader_kill_a_broker_restart_and_a_database_stop(tmp_path: Path):
    """Three control planes behind HAProxy, one PostgreSQL, one Mosquitto, ten agents: jobs flow through
    every replica (the followers forward them); the leader SIGKILLed mid-stream, the broker restarted,
    PostgreSQL stopped for 10 s. Every accepted job ends done once with its audio intact, and another
    replica took over the leader's duties."""
    server = PostgresServer()
    if server.external:
        pytest.skip("an outage needs a PostgreSQL server this test starts and stops itself")
    with server:
        url = server.create_database(f"f_replicas_{uuid.uuid4().hex[:8]}")
        with Harness(tmp_path, url, pg=server, replicas=3, fleet=FLEET_OF_TEN) as h:
            # 150 jobs over ~22 s: the leader's kill takes ~7 s (it comes back as a follower), so the broker
            # restart and the outage land while jobs are still coming in.
            report = run_scenario(h, jobs=150, interval_s=INTERVAL_S, seed=9, until_accepted=True, timeout_s=240,
                                  faults=[(2.0, "leader_sigkill"), (9.0, "broker_restart"), (13.0, "database_outage")])
            assert_promise_kept(report, h, {"leader_sigkill", "broker_restart", "database_outage"})
            assert report.failed == 0, report.describe()
            assert h.takeover_s < 10, f"another replica took over the leader's duties in {h.takeover_s:.1f}s"
            assert h.leader() is not None, "a replica leads at the end (after the outage, any may)"
            accepted = h.queued_by_replica()
            assert all(accepted) and sum(accepted) >= report.jobs, f"jobs came in through every replica: {accepted}"
