"""Stored voices (uploaded clips for zero-shot cloning) and how the API shows voices."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from voicefleet.ids import new_id, now


class Voice(SQLModel, table=True):
    """A stored voice: today only ``prompt`` voices (an uploaded clip for zero-shot cloning); preset
    voices come from what the devices' engines advertise and are not stored. A voice belongs to the
    subject of the token that uploaded it (``control_plane.voices.find`` says who may see and use it);
    the same clip uploaded by two owners is two voices, so neither learns of the other's."""

    __table_args__ = (UniqueConstraint("owner", "content_sha256", name="uq_voice_owner_content"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=64)
    kind: str = "prompt"  # prompt | preset
    transcript: str | None = None  # the words spoken in the prompt; required for prompt voices
    language: str | None = Field(default=None, max_length=8)  # what the clip speaks, where known
    consent: str  # who is speaking and how they agreed to the use of their voice
    owner: str | None = Field(default=None, index=True, max_length=64)  # the uploading token's subject
    content_sha256: str | None = Field(default=None, max_length=64)  # of the normalised samples
    duration_s: float | None = None
    sample_rate: int | None = None  # as uploaded; stored audio is 24 kHz mono
    snr_db: float | None = None
    embedding: list[float] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))  # 256-d, unit
    audio_key: str | None = None  # voices/<hash[:2]>/<hash>.wav under the audio dir
    created_at: float = Field(default_factory=now)


class VoicePublic(SQLModel):
    id: str  # a preset's id is its name: what a job's ``voice`` field takes
    name: str
    kind: Literal["preset", "prompt"]
    transcript: str | None = None
    language: str | None = None  # the uploader's word, else what the transcript's script says alone
    consent: str | None = None
    content_sha256: str | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    snr_db: float | None = None
    created_at: float | None = None
    audio_url: str | None = None
    advertised_by: list[str] = []  # presets: devices whose engines list it
    servable_by: list[str] = []  # devices that could take a job with this voice now


class VoiceSimilar(SQLModel):
    similarity: float  # cosine of the speaker embeddings, 1 = same voice
    voice: VoicePublic
