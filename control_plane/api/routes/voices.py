"""The voice library: upload a prompt voice, list prompt and preset voices with the devices that can
serve each now, fetch one and its audio, find similar voices, and delete a prompt voice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from sqlmodel import Session, select

from control_plane.api.auth import PrincipalDep, allow, allow_signed_or
from control_plane.api.deps import Services, ServicesDep, SessionDep
from control_plane.models import TERMINAL_STATES, Device, Job, Voice, VoicePublic, VoiceSimilar
from control_plane.tokens import Principal, Role
from control_plane.voices import Preset, VoiceError, VoiceService, cloning_devices, find, presets, stored

router = APIRouter(prefix="/v1/voices", tags=["voices"])
MAX_CLIP_BYTES = 10 * 1000 * 1000
MAX_UPLOAD_BODY_BYTES = MAX_CLIP_BYTES + (64 << 10)  # the clip plus multipart framing and the text fields
TOO_LARGE_HINT = f"a voice clip may be at most {MAX_CLIP_BYTES // 1_000_000} MB: trim it to 3-30 s or send FLAC"


def get_voices(request: Request) -> VoiceService:
    return request.app.state.voices


VoicesDep = Annotated[VoiceService, Depends(get_voices)]


def _owner(who: Principal | None) -> str | None:
    """Whose voices the caller sees and uses: a client its own, every other role (and a signed URL,
    which names one voice) all of them."""
    return None if who is None or who.sees_everything else who.subject


def _eligible(services: Services) -> Callable[[str], bool]:
    """May this device take a job now (the scheduler's health gate, as /v1/devices reports it)?"""
    return services.dispatcher.snapshot.eligible


def _prompt_public(voice: Voice, cloners: list[str]) -> VoicePublic:
    return VoicePublic.model_validate(voice, update={"audio_url": f"/v1/voices/{voice.id}/audio",
                                                     "servable_by": cloners})


def _preset_public(preset: Preset) -> VoicePublic:
    return VoicePublic(id=preset.name, name=preset.name, kind="preset", advertised_by=preset.advertised_by,
                       servable_by=preset.servable_by)


def _fleet(session: Session, services: Services) -> tuple[list[Device], Callable[[str], bool]]:
    return list(session.exec(select(Device).order_by(Device.id)).all()), _eligible(services)


@router.post("", status_code=201, response_model=VoicePublic,
             responses={200: {"description": "the same clip is already a voice: that voice"},
                        413: {"description": "clip too large"}, 422: {"description": "clip or fields refused"}},
             # The fields are optional in the signature so that a missing one is named with what to give.
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "required": ["file", "transcript", "consent"]}}}}})
async def add_voice(services: ServicesDep, voices: VoicesDep,
                    who: Annotated[Principal, Depends(allow(Role.operator, Role.client))],
                    file: Annotated[UploadFile | None, File()] = None,
                    transcript: Annotated[str | None, Form()] = None, consent: Annotated[str | None, Form()] = None,
                    name: Annotated[str | None, Form()] = None,
                    language: Annotated[str | None, Form()] = None) -> Response:
    """Add a prompt voice from a 3-30 s clip (WAV, FLAC, OGG, MP3; multipart field ``file``) with the
    words spoken in it (``transcript``) and who is speaking and how they agreed (``consent``).
    ``language`` (one of /v1/languages) is what the clip speaks; without it, the transcript's script
    says where only one language uses it (Han: zh), else it stays unknown. A cloning engine speaks a
    job in another language than its clip through its cross-lingual path."""
    if file is None:
        raise VoiceError("missing_file", "attach the voice clip as the multipart field `file`")
    data = await file.read(MAX_CLIP_BYTES + 1)
    if len(data) > MAX_CLIP_BYTES:
        raise VoiceError("too_large", TOO_LARGE_HINT)
    voice, created = await run_in_threadpool(_add, services, voices, data, file.filename, transcript, consent, name,
                                             language, who.subject)
    return Response(voice.model_dump_json(), status_code=201 if created else 200, media_type="application/json")


def _add(services: Services, voices: VoiceService, data: bytes, filename: str | None, transcript: str | None,
         consent: str | None, name: str | None, language: str | None, owner: str) -> tuple[VoicePublic, bool]:
    with Session(services.engine) as session:
        voice, created = voices.add(session, data=data, filename=filename, transcript=transcript, consent=consent,
                                    name=name, language=language, owner=owner)
        devices, eligible = _fleet(session, services)
        return _prompt_public(voice, cloning_devices(devices, eligible)), created


@router.get("", response_model=list[VoicePublic])
def list_voices(session: SessionDep, services: ServicesDep, who: PrincipalDep,
                kind: Literal["preset", "prompt"] | None = None) -> list[VoicePublic]:
    """Prompt voices (newest first; a client's own, everyone's for other roles), then the presets the
    fleet's engines advertise."""
    devices, eligible = _fleet(session, services)
    out: list[VoicePublic] = []
    if kind in (None, "prompt"):
        cloners = cloning_devices(devices, eligible)
        out += [_prompt_public(v, cloners) for v in stored(session, owner=_owner(who))]
    if kind in (None, "preset"):
        out += [_preset_public(p) for p in presets(devices, eligible)]
    return out


def _find(session: Session, services: Services, voice_id: str, who: Principal | None) -> Voice | VoicePublic | None:
    """A stored voice by id that ``who`` may see, else a preset by name (another client's voice is 404,
    not 403, as jobs are: its id reveals nothing)."""
    voice = find(session, voice_id, owner=_owner(who))
    if voice is not None:
        return voice
    devices, eligible = _fleet(session, services)
    return next((_preset_public(p) for p in presets(devices, eligible) if p.name == voice_id), None)


def _not_found(voice_id: str) -> VoiceError:
    return VoiceError("not_found", f"no voice {voice_id!r}; GET /v1/voices lists them")


@router.get("/{voice_id}", response_model=VoicePublic, responses={404: {"description": "no such voice"}})
def get_voice(voice_id: str, session: SessionDep, services: ServicesDep, who: PrincipalDep):
    found = _find(session, services, voice_id, who)
    if found is None:
        raise _not_found(voice_id)
    if isinstance(found, VoicePublic):
        return found
    return _prompt_public(found, cloning_devices(*_fleet(session, services)))


# The prompt clip is a person's voice: operators, and agents holding the signed URL of a job.
@router.get("/{voice_id}/audio", response_class=FileResponse, dependencies=[Depends(allow_signed_or(Role.operator))],
            responses={200: {"content": {"audio/wav": {}}}, 404: {"description": "no such voice or no audio"}})
def voice_audio(voice_id: str, session: SessionDep, services: ServicesDep, voices: VoicesDep):
    """The prompt as stored: 24 kHz mono 16-bit WAV, peak at -1 dBFS."""
    found = _find(session, services, voice_id, None)  # only operators, admins and signed URLs get here
    if found is None:
        raise _not_found(voice_id)
    if isinstance(found, VoicePublic):
        raise VoiceError("no_audio", f"{voice_id!r} is a preset voice of the fleet's engines: it has no prompt audio")
    return FileResponse(voices.audio_path(found), media_type="audio/wav", filename=f"{found.id}.wav")


@router.get("/{voice_id}/similar", response_model=list[VoiceSimilar],
            responses={404: {"description": "no such voice"},
                       409: {"description": "no_embedding: a preset, or a voice without one: nothing to compare"}})
def similar_voices(voice_id: str, session: SessionDep, services: ServicesDep, voices: VoicesDep, who: PrincipalDep,
                   limit: int = Query(5, ge=1, le=100)):
    """Other prompt voices ranked by speaker-embedding cosine (1 = same voice), most similar first."""
    found = _find(session, services, voice_id, who)
    if found is None:
        raise _not_found(voice_id)
    if isinstance(found, VoicePublic):
        raise VoiceError("no_embedding", f"{voice_id!r} is a preset voice: similarity works on prompt voices (upload "
                         "a clip of it to compare)")
    cloners = cloning_devices(*_fleet(session, services))
    return [VoiceSimilar(similarity=score, voice=_prompt_public(v, cloners))
            for v, score in voices.similar(session, found, limit, owner=_owner(who))]


@router.delete("/{voice_id}", status_code=204, response_class=Response,
               responses={404: {"description": "no such voice"},
                          409: {"description": "voice_in_use: an unfinished job speaks with it; preset_voice: "
                                                "the fleet's engines own it"}})
def delete_voice(voice_id: str, session: SessionDep, services: ServicesDep, voices: VoicesDep,
                 who: Annotated[Principal, Depends(allow(Role.operator, Role.client))]) -> Response:
    """Delete a prompt voice and its clip (operators and admins: any; a client: its own). Refused while
    an unfinished job uses it: placement reads the prompt when it assigns the job."""
    found = _find(session, services, voice_id, who)
    if found is None:
        raise _not_found(voice_id)
    if isinstance(found, VoicePublic):
        raise VoiceError("preset_voice", f"{voice_id!r} is a preset voice of the fleet's engines; only uploaded "
                         "prompt voices can be deleted")
    waiting = session.exec(select(Job.id).where(Job.voice == found.id, Job.state.not_in(TERMINAL_STATES))).first()
    if waiting is not None:
        raise VoiceError("voice_in_use", f"job {waiting} still speaks with voice {found.id}; cancel it or wait for "
                         "it to finish, then delete the voice")
    path = voices.audio_path(found) if found.audio_key else None
    key = found.audio_key
    session.delete(found)
    session.commit()
    # The clip is stored by content: another owner's voice of the same clip keeps it.
    if path is not None and session.exec(select(Voice.id).where(Voice.audio_key == key)).first() is None:
        path.unlink(missing_ok=True)
    return Response(status_code=204)
