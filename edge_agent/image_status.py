"""The image status record: what the image's mark-good step found at boot (the image it booted and
whether its test phrase passed), written by ``firmware_images/mark_good.py`` and reported by the agent
in its state. Here, below both, so neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path

from voicefleet.files import write_atomic

STATUS_FILE = Path("/var/lib/voicefleet/image-status.json")
REPORTED = ("image_version", "profile", "slot", "state", "checked_at")


def write_status(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, sort_keys=True, indent=2) + "\n")  # the agent never reads half a file


def image_report(status_path: Path = STATUS_FILE) -> dict | None:
    """What the agent puts in its state: the image it runs and whether it was marked good."""
    try:
        record = json.loads(status_path.read_text())
    except (OSError, ValueError):
        return None
    return {k: record.get(k) for k in REPORTED}
