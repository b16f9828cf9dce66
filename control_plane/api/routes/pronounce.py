"""The readings the Mandarin engines will speak for a text (voicefleet/text/mandarin.py ``readings``):
after normalisation, the pronunciation lexicon and inline pinyin, one entry per character."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError

from control_plane.api.auth import authenticate
from voicefleet.protocol import EMPTY_TEXT, MAX_TEXT_CHARS, text_too_long
from voicefleet.text import polyphones
from voicefleet.text.mandarin import readings
from voicefleet.text.speakable import unspeakable

router = APIRouter(prefix="/v1/pronounce", tags=["text"])


class PronounceRequest(BaseModel):
    """A text to read; only Mandarin (``zh``) has a reading to show."""

    # The schema says what it can (non-blank, under the job limit); the validator refuses in the words
    # and codes job submission uses (control_plane/models/jobs.py).
    text: str = Field(json_schema_extra={"minLength": 1, "maxLength": MAX_TEXT_CHARS - 1, "pattern": r"\S"})
    lang: Literal["zh"] = "zh"

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        too_long = text_too_long(v)
        if too_long:
            raise ValueError(too_long)
        bad = next((i for i, ch in enumerate(v) if "\ud800" <= ch <= "\udfff"), None)
        if bad is not None:  # JSON's \ud800 escape alone: no character, and no JSON answer could echo it
            raise ValueError(f"position {bad}: a lone UTF-16 surrogate is not a character; send the text as UTF-8")
        why = unspeakable(v)
        if why is not None and why.code == EMPTY_TEXT:  # punctuation alone is fine here: it shows as nulls
            raise PydanticCustomError(why.code, why.text)
        return v


class CharReading(BaseModel):
    char: str = Field(description="a character of the text as normalised, or an inline pinyin annotation")
    pinyin: str | None = Field(description="TONE3 with 5 for the neutral tone; null where nothing Han is read")
    polyphone: bool = Field(False, description="the character has more than one reading: this one was chosen "
                            "in context (a phrase, the context model or a rule); pin another with inline pinyin")


class Pronunciation(BaseModel):
    normalised: str = Field(description="the text as the engines read it (numbers, dates and units as words)")
    readings: list[CharReading]


@router.post("", response_model=Pronunciation, dependencies=[Depends(authenticate)])  # any role: it reads no data
def pronounce(body: PronounceRequest) -> Pronunciation:
    """The readings the Mandarin voices will use for ``text``: digits as the words read for them, each
    Han character with its pinyin, an inline annotation (``[h][ǎo]``) with the reading it pins, and
    null for everything not Han. Any token may ask."""
    chooser = polyphones.model()
    many = chooser.candidates if chooser is not None else {}
    read = readings(body.text)
    return Pronunciation(normalised="".join(c for c, _ in read),
                         readings=[CharReading(char=c, pinyin=p, polyphone=p is not None and c in many)
                                   for c, p in read])
