"""What the console's overview flags for an operator: enrolled or recently seen devices that are offline,
devices whose telemetry says they throttle, error rates over the settings' threshold, halted rollouts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from sqlmodel import Session, col, select

from control_plane.core.config import Settings
from control_plane.models import Device, MqttUser, Rollout
from control_plane.stats import ErrorRate, Jobs

RECENT_S = 24 * 3600.0  # an offline device seen within this long (or enrolled) is missed
HALTED = ("halting", "halted")


class Alarm(BaseModel):
    kind: Literal["device_offline", "device_throttling", "error_rate", "rollout_halted"]
    subject: str  # a device id, a rollout id, "fleet" or "engine:<name>"
    text: str
    since: float | None = None  # offline: last heard from; rollout: when it halted
    value: float | None = None  # throttling: temperature (°C) if reported; error rate: the rate


def alarms(session: Session, settings: Settings, jobs: Jobs, *, now: float) -> list[Alarm]:
    return [*_devices(session, now), *_error_rates(settings, jobs), *_halted(session)]


def _devices(session: Session, now: float) -> list[Alarm]:
    logins = {u.username: u.revoked_at for u in session.exec(select(MqttUser).where(MqttUser.kind == "device")).all()}
    out = []
    for dev in session.exec(select(Device).order_by(col(Device.id))).all():
        if dev.status == "offline":
            if logins.get(dev.id) is not None:
                continue  # revoked: decommissioned on purpose
            if dev.id in logins or (dev.last_seen_at or 0) >= now - RECENT_S:
                out.append(Alarm(kind="device_offline", subject=dev.id, since=dev.last_seen_at,
                                 text=f"{dev.role or 'device'} {dev.id} is offline"))
        elif (dev.telemetry or {}).get("throttled"):
            temp = dev.telemetry.get("temperature_c")
            at = f" at {temp:.0f} °C" if temp is not None else ""
            out.append(Alarm(kind="device_throttling", subject=dev.id, value=temp,
                             text=f"{dev.id} is thermally throttling{at}"))
    return out


def _error_rates(settings: Settings, jobs: Jobs) -> list[Alarm]:
    fleet = ErrorRate(key=None, finished=jobs.window.done + jobs.window.failed, failed=jobs.window.failed,
                      rate=jobs.window.failed / max(jobs.window.done + jobs.window.failed, 1))
    out = []
    for subject, rate in [("fleet", fleet), *((f"engine:{r.key}", r) for r in jobs.error_rate_by_engine if r.key)]:
        if rate.finished >= settings.alarm_error_min_jobs and rate.rate > settings.alarm_error_rate:
            out.append(Alarm(kind="error_rate", subject=subject, value=rate.rate,
                             text=f"{rate.failed} of {rate.finished} jobs failed ({rate.rate:.0%}) "
                                  f"{'fleet-wide' if subject == 'fleet' else 'on ' + subject[7:]} in the last "
                                  f"{jobs.until - jobs.since:.0f} s"))
    return out


def _halted(session: Session) -> list[Alarm]:
    rows = session.exec(select(Rollout).where(col(Rollout.state).in_(HALTED)).order_by(col(Rollout.updated_at))).all()
    return [Alarm(kind="rollout_halted", subject=r.id, since=r.updated_at,
                  text=f"rollout of {r.model_id} {r.version} {r.state}: {r.reason or 'no reason given'}")
            for r in rows]
