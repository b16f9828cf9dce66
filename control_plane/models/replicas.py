"""The control-plane replicas sharing one database: each writes its row every second, so the others
know which one leads and where to reach it (control_plane/roles.py)."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class LeaderTerm(SQLModel, table=True):
    """One row: the leader's term. A replica that takes the lead raises ``epoch``; every transaction of
    its dispatcher checks the epoch is still its own (reading the row FOR SHARE), so a leader that lost
    the lead without knowing it (a database outage, a pause) cannot write after its successor began."""

    id: int = Field(default=1, primary_key=True)
    epoch: int = 0
    replica: str = Field(max_length=64)
    since: float


class Replica(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)  # VOICEFLEET_CONTROL_ID
    url: str = Field(max_length=300)  # where the other replicas reach its API (VOICEFLEET_REPLICA_URL)
    leading: bool = False
    seen_at: float = Field(index=True)
