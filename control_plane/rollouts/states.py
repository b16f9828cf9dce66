"""The states a rollout and its targets go through, and the refusal of an operator's request."""

from __future__ import annotations

from voicefleet.errors import CodedError

ACTIVE = ("running", "paused", "halting", "rolling_back")  # the tick looks only at these
IN_FLIGHT = ("sent", "downloading", "verified", "tested")  # an install the device is working on
UNDO = ("rollback", "rolling_back")  # to be rolled back / rollback sent
STAGE_STATE = {"downloading": "downloading", "verified": "verified", "tested": "tested", "activated": "activated",
               "failed": "failed", "rolled_back": "rolled_back"}
# Refusals that say "not now" or "not this link" rather than "this version is bad": the install is
# sent again later (with a fresh signed link).
DEFERRED = ("busy", "trial_running", "link_expired", "download_failed")
# Job failures that say nothing about the model (the device went away, a lease ran out).
NOT_MODEL_ERRORS = ("device_lost", "lease_expired", "audio_incomplete")

Publish = list[tuple[str, bytes]]  # (topic, payload) to send once the transaction has committed


class RolloutError(CodedError):
    """A request the rollouts refuse: ``code`` for programs, ``text`` for people."""
