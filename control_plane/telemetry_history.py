"""Telemetry as a time series: the dispatcher keeps a sample of a device's figures when its telemetry
arrives (at most one per device per ``SAMPLE_EVERY_S``), and prunes samples past ``KEEP_S`` every
``PRUNE_EVERY`` inserts (an indexed delete, so no housekeeping timer is needed)."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from control_plane.models import TelemetryPoint, TelemetrySample
from control_plane.models.telemetry import FIGURES

SAMPLE_EVERY_S = 10.0
KEEP_S = 24 * 3600.0
PRUNE_EVERY = 500


class TelemetryHistory:
    """One database's sampler; only the dispatcher thread calls ``record``."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}  # device -> when its last sample was kept
        self._inserts = 0

    def record(self, session: Session, device_id: str, telemetry: dict[str, Any], at: float) -> bool:
        """Keep a sample of ``telemetry`` unless this device had one in the last SAMPLE_EVERY_S."""
        if at - self._last.get(device_id, float("-inf")) < SAMPLE_EVERY_S:
            return False
        self._last[device_id] = at
        figures = {k: telemetry[k] for k in FIGURES if telemetry.get(k) is not None}
        session.add(TelemetrySample(device_id=device_id, at=at, figures=figures))
        if self._inserts % PRUNE_EVERY == 0:  # the first insert after a start prunes too
            session.exec(delete(TelemetrySample).where(col(TelemetrySample.at) < at - KEEP_S))
        self._inserts += 1
        return True


_histories: WeakKeyDictionary[Engine, TelemetryHistory] = WeakKeyDictionary()


def history_of(engine: Engine) -> TelemetryHistory:
    """The sampler of this database (a process may run more than one control plane, as tests do)."""
    return _histories.setdefault(engine, TelemetryHistory())


def series(session: Session, device_id: str, *, since: float) -> list[TelemetryPoint]:
    rows = session.exec(select(TelemetrySample.at, TelemetrySample.figures)
                        .where(TelemetrySample.device_id == device_id, col(TelemetrySample.at) >= since)
                        .order_by(col(TelemetrySample.at))).all()
    return [TelemetryPoint(at=at, **figures) for at, figures in rows]
