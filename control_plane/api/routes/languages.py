"""What a job may ask for: its languages and the Chinese dialects, with their names in both
languages (the console's playground and any integrator's form list them from here)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from control_plane.api.auth import authenticate
from voicefleet.protocol.dialects import DIALECT_CATALOG
from voicefleet.protocol.speech import LANGUAGES

router = APIRouter(prefix="/v1/languages", tags=["text"])


class DialectInfo(BaseModel):
    code: str
    name_en: str
    name_zh: str


class Languages(BaseModel):
    languages: dict[str, str]
    dialects: list[DialectInfo]


@router.get("", response_model=Languages, dependencies=[Depends(authenticate)])  # any role: no fleet data
def languages() -> Languages:
    """The ``lang`` values a job may carry, and the dialects ``dialect`` may name (with ``lang`` zh)."""
    return Languages(languages=LANGUAGES,
                     dialects=[DialectInfo(code=d.code, name_en=d.name_en, name_zh=d.name_zh) for d in DIALECT_CATALOG])
