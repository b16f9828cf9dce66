"""The console's overview: fleet, jobs over a window, rollouts and alarms in one read."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import BaseModel

from control_plane import alarms, stats
from control_plane.api.auth import Reader
from control_plane.api.deps import ServicesDep, SessionDep
from voicefleet.ids import now

router = APIRouter(prefix="/v1/stats", tags=["stats"])


class Overview(BaseModel):
    at: float
    fleet: stats.Fleet
    jobs: stats.Jobs
    rollouts: list[stats.RolloutSummary]  # the active ones
    alarms: list[alarms.Alarm]


@router.get("/overview", response_model=Overview, dependencies=[Reader])
def overview(session: SessionDep, services: ServicesDep,
             window_s: int = Query(3600, ge=60, le=7 * 86400, description="how far back the job figures go"),
             bucket_s: int = Query(60, ge=1, le=86400, description="the width of each bar of the series; raised "
                                   f"to make at most {stats.MAX_BUCKETS} bars (jobs.bucket_s says what was used)"),
             ) -> Overview:
    """Fleet counts (by role, site and tag), job figures per bucket and over the window, queues, error
    rates, active rollouts and alarms. Buckets are aligned to multiples of ``bucket_s``; percentiles are
    nearest-rank over done jobs, latencies measured from submission."""
    t = now()
    bucket_s = max(bucket_s, -(-window_s // stats.MAX_BUCKETS))
    jobs = stats.jobs_overview(session, now=t, window_s=window_s, bucket_s=bucket_s)
    return Overview(at=t, fleet=stats.fleet(session, services.dispatcher.snapshot), jobs=jobs,
                    rollouts=stats.active_rollouts(session),
                    alarms=alarms.alarms(session, services.settings, jobs, now=t))
