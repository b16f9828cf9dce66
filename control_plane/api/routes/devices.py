"""The fleet as the control plane sees it."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlmodel import select

from control_plane import jobs
from control_plane.api.deps import SessionDep
from control_plane.models import Device, DevicePublic

router = APIRouter(prefix="/v1/devices", tags=["devices"])


@router.get("", response_model=list[DevicePublic])
def list_devices(session: SessionDep) -> list[DevicePublic]:
    inflight = jobs.inflight_by_device(session)
    return [DevicePublic.model_validate(d, update={"inflight": inflight.get(d.id, 0)})
            for d in session.exec(select(Device).order_by(Device.id)).all()]


@router.get("/{device_id}", response_model=DevicePublic)
def get_device(device_id: str, session: SessionDep) -> DevicePublic:
    dev = session.get(Device, device_id)
    if dev is None:
        raise HTTPException(404, f"no device {device_id!r}")
    inflight = jobs.inflight_by_device(session)
    return DevicePublic.model_validate(dev, update={"inflight": inflight.get(dev.id, 0)})
