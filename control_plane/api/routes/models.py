"""The model registry: upload a signed bundle, list versions and who runs them, pin a device, and
the bundle files agents download (HTTP Range, by signed URL)."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from control_plane.api.auth import Operator, Reader, allow_signed_or
from control_plane.api.deps import ServicesDep, SessionDep
from control_plane.api.errors import DISPATCHER_ANSWERS, declare
from control_plane.dispatch import PinModel
from control_plane.models import DeviceModelPublic, ModelVersion, ModelVersionPublic
from control_plane.registry import Registry, running
from control_plane.rollouts import files_path
from control_plane.signed_urls import signature_ok
from control_plane.tokens import Role

router = APIRouter(prefix="/v1/models", tags=["models"])
MAX_UPLOAD_BYTES = 2 << 30
TOO_LARGE_HINT = f"a bundle archive may be at most {MAX_UPLOAD_BYTES >> 30} GiB"
_PIN_ANSWERS = declare("unknown_device", "unknown_version", *DISPATCHER_ANSWERS)
# Starlette's FileResponse answers a Range request with 206, or 416 when it is out of the file.
_FILE_ANSWERS = {200: {"content": {"application/octet-stream": {}}, "description": "the file"},
                 206: {"content": {"application/octet-stream": {}}, "description": "the ranges asked for"},
                 **declare(404, 416)}


def _registry(services: ServicesDep) -> Registry:
    return services.registry


def _public(row: ModelVersion, counts: Counter, detail: bool = False) -> ModelVersionPublic:
    return ModelVersionPublic.model_validate(row, update={"devices": counts[(row.model_id, row.version)],
                                                          "manifest": row.manifest if detail else None})


def _counts(session: Session, model_id: str | None = None) -> Counter:
    return Counter((dm.model_id, dm.version) for dm in running(session, model_id))


@router.post("", status_code=201, response_model=ModelVersionPublic, dependencies=[Operator],
             responses={200: {"model": ModelVersionPublic, "description": "this exact version is already stored"},
                        **declare("too_large", "version_exists", "invalid_request")},
             openapi_extra={"requestBody": {"content": {"application/gzip": {"schema": {"type": "string",
                                                                                       "format": "binary"}}}}})
async def upload(request: Request, response: Response, session: SessionDep,
                 services: ServicesDep) -> ModelVersionPublic:
    """Upload a bundle as a .tar.gz (or .tar) archive in the request body (``voicefleet.bundle.pack_archive``).
    It is stored only if its signature verifies against the trusted keys and every file matches the
    manifest; 200 when this exact version is already stored."""
    registry = _registry(services)
    with tempfile.TemporaryDirectory(dir=registry.tmp_dir()) as tmp:
        archive = Path(tmp) / "upload.tar.gz"
        size = 0
        with open(archive, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise HTTPException(413, f"request body over {MAX_UPLOAD_BYTES} bytes; {TOO_LARGE_HINT}")
                out.write(chunk)
        if size == 0:
            raise HTTPException(422, "send the bundle archive (.tar.gz) as the request body")
        row, new = await run_in_threadpool(registry.add, session, archive)
    if not new:
        response.status_code = 200
    return _public(row, _counts(session, row.model_id), detail=True)


@router.get("", response_model=list[ModelVersionPublic], dependencies=[Reader])
def list_versions(session: SessionDep, services: ServicesDep, model_id: str | None = None,
                  manifest: bool = False) -> list[ModelVersionPublic]:
    """``manifest=true`` gives each version's manifest too (its evaluation figures: what the console shows)."""
    counts = _counts(session, model_id)
    return [_public(row, counts, detail=manifest) for row in _registry(services).versions(session, model_id)]


@router.get("/{model_id}/devices", response_model=list[DeviceModelPublic], dependencies=[Reader])
def devices(model_id: str, session: SessionDep) -> list[DeviceModelPublic]:
    """Which devices run which version of this model, their tags and pins."""
    return [DeviceModelPublic.model_validate(dm) for dm in running(session, model_id)]


@router.get("/{model_id}/versions/{version}", response_model=ModelVersionPublic, dependencies=[Reader],
            responses=declare(404))
def get_version(model_id: str, version: str, session: SessionDep, services: ServicesDep) -> ModelVersionPublic:
    return _public(_version(session, services, model_id, version), _counts(session, model_id), detail=True)


class Pin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=100)


@router.put("/{model_id}/pins/{device_id}", response_model=DeviceModelPublic, dependencies=[Operator],
            responses=_PIN_ANSWERS)
async def pin(model_id: str, device_id: str, body: Pin, services: ServicesDep) -> DeviceModelPublic:
    """Keep a device on a version: rollouts pass it by, and it installs the version now if it runs another."""
    return await _pin(services, model_id, device_id, body.version)


@router.delete("/{model_id}/pins/{device_id}", response_model=DeviceModelPublic, dependencies=[Operator],
               responses=_PIN_ANSWERS)
async def unpin(model_id: str, device_id: str, services: ServicesDep) -> DeviceModelPublic:
    return await _pin(services, model_id, device_id, None)


async def _pin(services, model_id: str, device_id: str, version: str | None) -> DeviceModelPublic:
    dm = await services.dispatcher.ask(PinModel(device_id=device_id, model_id=model_id, version=version))
    return DeviceModelPublic.model_validate(dm)


# ---------------------------------------------------------------------------------- files


@router.get("/{model_id}/versions/{version}/files/{name}", dependencies=[Depends(allow_signed_or(Role.operator))],
            response_class=FileResponse, responses=_FILE_ANSWERS)
def file(model_id: str, version: str, name: str, session: SessionDep, services: ServicesDep) -> FileResponse:
    """One file of a version (Range requests resume a download)."""
    return _file(session, services, model_id, version, name)


@router.get("/{model_id}/versions/{version}/signed/{exp}/{sig}/{name}", response_class=FileResponse,
            responses={**_FILE_ANSWERS, **declare(403)})
def signed_file(model_id: str, version: str, exp: str, sig: str, name: str, session: SessionDep,
                services: ServicesDep) -> FileResponse:
    """What an OtaCommand's ``base_url`` points at: the signature covers the version's whole files folder."""
    if not signature_ok(services.url_secret, files_path(model_id, version), exp, sig):
        raise HTTPException(403, "this download link is invalid or expired; the control plane sends a fresh one "
                                 "with its next command")
    return _file(session, services, model_id, version, name)


def _version(session: Session, services, model_id: str, version: str) -> ModelVersion:
    row = _registry(services).get(session, model_id, version)
    if row is None:
        raise HTTPException(404, f"no version {version!r} of model {model_id!r}")
    return row


def _file(session: Session, services, model_id: str, version: str, name: str) -> FileResponse:
    row = _version(session, services, model_id, version)
    path = _registry(services).file_path(row, name)
    if path is None:
        raise HTTPException(404, f"{model_id} {version} has no file {name!r}")
    # Starlette's FileResponse answers Range (206, multi-range, 416) and sets Accept-Ranges itself.
    return FileResponse(path, media_type="application/octet-stream")
