"""The one shape of our domain errors: a ``code`` for programs and a ``text`` for people that says
what is wrong and what to do. Modules subclass it to name their own kind of failure. It knows
nothing of HTTP: the control plane's API maps codes to statuses in one table
(control_plane/api/errors.py)."""

from __future__ import annotations


class CodedError(ValueError):
    retry_after_s: int | None = None  # set when the refusal is temporary: how long until a retry may pass

    def __init__(self, code: str, text: str):
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
