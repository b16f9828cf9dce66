"""Device telemetry kept as a time series for the console's charts (control_plane/telemetry_history.py
writes it): at most one sample per device per 10 s, kept for a day."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel


class TelemetrySample(SQLModel, table=True):
    __table_args__ = (Index("ix_telemetrysample_device_at", "device_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(max_length=64)
    at: float = Field(index=True)  # when it arrived (the control plane's clock); pruning reads it alone
    figures: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # the numeric fields it reported


class TelemetryPoint(SQLModel):
    """One sample as the API gives it: its time and the figures the device reported (absent: null)."""

    at: float
    cpu_percent: float | None = None
    mem_percent: float | None = None
    mem_available_mb: float | None = None
    load1: float | None = None
    temperature_c: float | None = None
    throttled: bool | None = None
    gpu_percent: float | None = None
    power_w: float | None = None
    gpu_mem_used_mb: float | None = None  # NVML (GPU workers)
    gpu_mem_total_mb: float | None = None
    gpu_temperature_c: float | None = None
    inflight: int | None = None
    queued: int | None = None
    rtf: float | None = None


FIGURES = tuple(name for name in TelemetryPoint.model_fields if name != "at")
