"""Ids and the clock, shared by the wire protocol, the database rows and the agents.

Times are Unix seconds (float); ids are 32 hex characters (file-name safe, see protocol.ID_PATTERN).
"""

from __future__ import annotations

import time
import uuid


def now() -> float:
    return time.time()


def new_id() -> str:
    return uuid.uuid4().hex
