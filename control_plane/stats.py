"""The console's overview of the fleet, its jobs over a window and its active rollouts.

Jobs come from one indexed query (created or finished in the window, or in flight now); their figures
are computed here, the same on SQLite and PostgreSQL. Buckets are aligned to multiples of ``bucket_s``
(a chart keeps its bars between refreshes): the window starts at the first bucket's start and ends now.
A job counts in the bucket it finished in. Percentiles are nearest-rank over done jobs: the value at
rank ceil(p/100 * n) of the n sorted latencies; first chunk = first_chunk_at - created_at, total =
finished_at - created_at. Queue depth at a time t is the jobs created by t and not yet assigned (or
finished, for jobs cancelled in the queue) at t, sampled at each bucket's end.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from pydantic import BaseModel, Field
from sqlalchemy import func, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from control_plane.dispatch.snapshot import FleetSnapshot
from control_plane.models import Device, DeviceModel, Job, JobState, Rollout, RolloutTarget
from control_plane.rollouts.states import ACTIVE

TIERS = ("interactive", "batch")
MAX_BUCKETS = 1440


class FleetGroup(BaseModel):
    """The devices that share a role, a site or a tag (``key`` null: those without one)."""

    key: str | None
    total: int = 0
    online: int = 0
    offline: int = 0
    draining: int = 0
    cordoned: int = 0  # by an operator, whatever their status
    unhealthy: int = 0  # online, not cordoned, yet the scheduler gives them no jobs


class UnhealthyDevice(BaseModel):
    id: str
    role: str | None
    site: str | None
    reason: str  # the scheduler's gate: thermal throttling, memory pressure, recent failures, ...


class Fleet(BaseModel):
    all: FleetGroup
    by_role: list[FleetGroup]
    by_site: list[FleetGroup]  # from "site:<name>" tags
    by_tag: list[FleetGroup]
    unhealthy: list[UnhealthyDevice]


class JobFigures(BaseModel):
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    jobs_per_s: float = 0.0  # done and failed, per second of the span
    first_chunk_p50_s: float | None = None  # over done jobs that streamed a chunk
    first_chunk_p99_s: float | None = None
    total_p50_s: float | None = None  # over done jobs
    total_p99_s: float | None = None


class JobBucket(JobFigures):
    start: float
    queue_depth: dict[str, int]  # per tier, at the bucket's end (now for the last one)


class ErrorRate(BaseModel):
    key: str | None  # the engine or the dialect (a job without a dialect: its language); null: none known
    finished: int  # done and failed
    failed: int
    rate: float


class Jobs(BaseModel):
    since: float
    until: float
    bucket_s: int
    buckets: list[JobBucket]
    window: JobFigures
    queue_depth: dict[str, int]  # per tier, now
    error_rate_by_engine: list[ErrorRate]
    error_rate_by_dialect: list[ErrorRate]


class RolloutSummary(BaseModel):
    id: str
    state: str
    model_id: str
    version: str
    phase: int
    targets: dict[str, int]  # devices in each target state
    total: int
    updated: int  # activated
    progress: float = Field(description="updated / total, 0..1")


class JobRow(NamedTuple):
    created: float
    assigned: float | None
    first_chunk: float | None
    finished: float | None
    state: str
    tier: str
    dialect: str  # or its language, when it named no dialect
    engine: str | None

    @property
    def left_queue(self) -> float:
        """When it stopped waiting (inf while it waits: a requeued job keeps its old assigned_at)."""
        if self.state == JobState.queued:
            return math.inf
        return self.assigned if self.assigned is not None else self.finished or math.inf


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest rank: the value at rank ceil(p/100 * n) of ``ordered`` (sorted)."""
    if not ordered:
        return None
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


def window_bounds(now: float, window_s: int, bucket_s: int) -> list[float]:
    """The starts of the buckets covering the last ``window_s`` seconds, aligned to ``bucket_s``."""
    n = math.ceil(window_s / bucket_s)
    last = math.floor(now / bucket_s) * bucket_s
    return [last - (n - 1 - i) * bucket_s for i in range(n)]


# -- fleet ----------------------------------------------------------------------------------


def site_of(tags: Iterable[str]) -> str | None:
    return next((t.removeprefix("site:") for t in tags if t.startswith("site:")), None)


def fleet(session: Session, snapshot: FleetSnapshot) -> Fleet:
    tags = {dm.device_id: dm.tags or [] for dm in session.exec(select(DeviceModel)).all()}
    groups: dict[str, dict[str | None, FleetGroup]] = {"all": {}, "role": {}, "site": {}, "tag": {}}
    unhealthy = []
    for dev in session.exec(select(Device).order_by(col(Device.id))).all():
        mine = tags.get(dev.id, [])
        reason = _unhealthy(dev, snapshot)
        site = site_of(mine)
        if reason is not None:
            unhealthy.append(UnhealthyDevice(id=dev.id, role=dev.role, site=site, reason=reason))
        keys = {"all": [None], "role": [dev.role], "site": [site], "tag": mine or [None]}
        for kind, values in keys.items():
            for key in values:
                _count(groups[kind].setdefault(key, FleetGroup(key=key)), dev, reason is not None)
    ordered = {kind: sorted(g.values(), key=lambda x: (x.key is None, x.key or "")) for kind, g in groups.items()}
    return Fleet(all=ordered["all"][0] if ordered["all"] else FleetGroup(key=None), by_role=ordered["role"],
                 by_site=ordered["site"], by_tag=ordered["tag"], unhealthy=unhealthy)


def _unhealthy(dev: Device, snapshot: FleetSnapshot) -> str | None:
    """Why an online, uncordoned device gets no jobs, or None (offline, draining and cordoned are counted
    as such, not as unhealthy)."""
    if dev.status != "online" or dev.cordoned:
        return None
    seen = snapshot.get(dev.id)
    if seen is None:
        return "not in the scheduler's view (it has not said what it can speak)"
    return seen.gate


def _count(group: FleetGroup, dev: Device, unhealthy: bool) -> None:
    group.total += 1
    if dev.status in ("online", "offline", "draining"):
        setattr(group, dev.status, getattr(group, dev.status) + 1)
    group.cordoned += dev.cordoned
    group.unhealthy += unhealthy


# -- jobs -----------------------------------------------------------------------------------


def window_query(since: float) -> Select:
    """Every job created or finished since ``since``, or in flight now: each term has its index."""
    return (select(Job.created_at, Job.assigned_at, Job.first_chunk_at, Job.finished_at, Job.state, Job.tier,
                   func.coalesce(Job.dialect, Job.lang), col(Job.spoken_by)["engine"].as_string())
            .where(or_(col(Job.created_at) >= since, col(Job.finished_at) >= since,
                       col(Job.state).in_((JobState.assigned, JobState.running)))))


def job_rows(session: Session, since: float) -> list[JobRow]:
    # Plain rows (no ORM loading): this is most of the overview's time.
    return [JobRow(*row) for row in session.connection().execute(window_query(since))]


def queued_now(session: Session, *, created_before: float | None = None) -> dict[str, int]:
    q = select(Job.tier, func.count()).where(Job.state == JobState.queued).group_by(Job.tier)
    if created_before is not None:
        q = q.where(col(Job.created_at) < created_before)
    counts = dict(session.exec(q).all())
    return {tier: counts.get(tier, 0) for tier in TIERS}


def figures(rows: list[JobRow], span_s: float) -> JobFigures:
    states = Counter(r.state for r in rows)
    done = [r for r in rows if r.state == JobState.done]
    first = sorted(r.first_chunk - r.created for r in done if r.first_chunk is not None)
    total = sorted(r.finished - r.created for r in done)
    finished = states[JobState.done] + states[JobState.failed]
    return JobFigures(done=states[JobState.done], failed=states[JobState.failed],
                      cancelled=states[JobState.cancelled], jobs_per_s=finished / span_s if span_s > 0 else 0.0,
                      first_chunk_p50_s=percentile(first, 50), first_chunk_p99_s=percentile(first, 99),
                      total_p50_s=percentile(total, 50), total_p99_s=percentile(total, 99))


def error_rates(rows: list[JobRow], key: Callable[[JobRow], str | None]) -> list[ErrorRate]:
    finished = Counter(key(r) for r in rows if r.state in (JobState.done, JobState.failed))
    failed = Counter(key(r) for r in rows if r.state == JobState.failed)
    return [ErrorRate(key=k, finished=n, failed=failed[k], rate=failed[k] / n)
            for k, n in sorted(finished.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))]


def queue_series(rows: list[JobRow], ends: list[float], before: dict[str, int]) -> list[dict[str, int]]:
    """Queue depth per tier at each of ``ends``: jobs created by then and not yet out of the queue,
    plus ``before`` (created before the window and still queued now)."""
    out = [dict(before) for _ in ends]
    for tier in TIERS:
        mine = [r for r in rows if r.tier == tier]
        created = sorted(r.created for r in mine)
        left = sorted(r.left_queue for r in mine)
        for i, end in enumerate(ends):
            out[i][tier] += bisect_right(created, end) - bisect_right(left, end)
    return out


def jobs_overview(session: Session, *, now: float, window_s: int, bucket_s: int) -> Jobs:
    starts = window_bounds(now, window_s, bucket_s)
    since = starts[0]
    rows = job_rows(session, since)
    in_window = [r for r in rows if r.finished is not None and since <= r.finished <= now]
    by_bucket: dict[int, list[JobRow]] = defaultdict(list)
    for r in in_window:
        by_bucket[min(int((r.finished - since) // bucket_s), len(starts) - 1)].append(r)
    ends = [min(s + bucket_s, now) for s in starts]
    depth = queue_series(rows, ends, queued_now(session, created_before=since))
    buckets = [JobBucket(start=s, queue_depth=depth[i], **figures(by_bucket[i], ends[i] - s).model_dump())
               for i, s in enumerate(starts)]
    return Jobs(since=since, until=now, bucket_s=bucket_s, buckets=buckets, window=figures(in_window, now - since),
                queue_depth=queued_now(session), error_rate_by_engine=error_rates(in_window, lambda r: r.engine),
                error_rate_by_dialect=error_rates(in_window, lambda r: r.dialect))


# -- rollouts -------------------------------------------------------------------------------


def active_rollouts(session: Session) -> list[RolloutSummary]:
    rollouts = session.exec(select(Rollout).where(col(Rollout.state).in_(ACTIVE))
                            .order_by(col(Rollout.created_at))).all()
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    if rollouts:
        q = (select(RolloutTarget.rollout_id, RolloutTarget.state, func.count())
             .where(col(RolloutTarget.rollout_id).in_([r.id for r in rollouts]))
             .group_by(RolloutTarget.rollout_id, RolloutTarget.state))
        for rollout_id, state, n in session.exec(q).all():
            counts[rollout_id][state] = n
    out = []
    for r in rollouts:
        targets = counts[r.id]
        total, updated = sum(targets.values()), targets.get("activated", 0)
        out.append(RolloutSummary(id=r.id, state=r.state, model_id=r.model_id, version=r.version, phase=r.phase,
                                  targets=targets, total=total, updated=updated,
                                  progress=updated / total if total else 0.0))
    return out
