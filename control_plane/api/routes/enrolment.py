"""Device enrolment: admins make one-time tokens and revoke devices; a device redeems a token (the
token is its credential, no API token needed) for its own MQTT login."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from control_plane import broker_auth, enrolment
from control_plane.api.auth import Admin
from control_plane.api.deps import Services, ServicesDep, SessionDep
from control_plane.api.errors import DISPATCHER_ANSWERS, declare
from control_plane.dispatch import MarkOffline, SteerDevice
from control_plane.models import (
    EnrolmentTokenCreate,
    EnrolmentTokenPublic,
    EnrolRequest,
    EnrolResponse,
    MqttUserPublic,
)

router = APIRouter(prefix="/v1", tags=["enrolment"])


@router.post("/enrolment-tokens", status_code=201, response_model=EnrolmentTokenPublic, dependencies=[Admin])
def create_token(body: EnrolmentTokenCreate, session: SessionDep) -> EnrolmentTokenPublic:
    """A one-time token for one device; the token is in this answer only (``token``)."""
    row, token = enrolment.create_token(session, device_id=body.device_id, tags=body.tags, ttl_s=body.ttl_s)
    return EnrolmentTokenPublic.model_validate(row, update={"token": token})


@router.get("/enrolment-tokens", response_model=list[EnrolmentTokenPublic], dependencies=[Admin])
def list_tokens(session: SessionDep) -> list[EnrolmentTokenPublic]:
    return [EnrolmentTokenPublic.model_validate(t) for t in enrolment.list_tokens(session)]


@router.post("/enrol", response_model=EnrolResponse, responses=declare("invalid_token", "wrong_device", "device_taken"))
def enrol(body: EnrolRequest, session: SessionDep, services: ServicesDep) -> EnrolResponse:
    """Redeem an enrolment token: the device's MQTT login, whose password is given only here."""
    user, password = enrolment.enrol(session, token=body.token, device_id=body.device_id)
    _sync_broker(services)
    return EnrolResponse(device_id=user.username, mqtt_username=user.username, mqtt_password=password,
                         tags=user.tags)


@router.get("/mqtt-users", response_model=list[MqttUserPublic], dependencies=[Admin])
def list_users(session: SessionDep) -> list[MqttUserPublic]:
    """Every broker login: enrolled devices (revoked ones included) and control planes."""
    return [MqttUserPublic.model_validate(u) for u in enrolment.list_users(session)]


@router.post("/devices/{device_id}/revoke", response_model=MqttUserPublic, dependencies=[Admin],
             responses=declare(404, *DISPATCHER_ANSWERS))
async def revoke(device_id: str, services: ServicesDep) -> MqttUserPublic:
    """Cut a device off at once: its login goes, the broker disconnects it, its jobs go to others."""
    user = await run_in_threadpool(_revoke, services, device_id)
    if user is None:
        raise HTTPException(404, f"no enrolled device {device_id!r}")
    await services.dispatcher.ask(SteerDevice(device_id, "cordon"))  # no-op if it never came online
    # Its own last will may be refused now that its ACL is gone: say "offline" for it, so that the
    # jobs it holds are taken back at once and its retained state stops claiming it is online.
    await services.dispatcher.ask(MarkOffline(device_id))
    return MqttUserPublic.model_validate(user)


def _revoke(services: Services, device_id: str):
    with Session(services.engine) as session:
        user = enrolment.revoke(session, device_id=device_id)
    if user is not None:
        _sync_broker(services)
    return user


def _sync_broker(services: Services) -> None:
    files = broker_auth.from_settings(services.settings)
    if files is not None:
        files.sync(services.engine)
