"""The control-plane replicas sharing one database: each writes its row every second, so the others
know which one leads and where to reach it (control_plane/roles.py)."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class Replica(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)  # VOICEFLEET_CONTROL_ID
    url: str = Field(max_length=300)  # where the other replicas reach its API (VOICEFLEET_REPLICA_URL)
    leading: bool = False
    seen_at: float = Field(index=True)
