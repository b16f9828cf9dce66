"""Log lines for people (``text``, the default) or for a log collector (``json``: one object a line,
ready for Loki or any other). Set with VOICEFLEET_LOG_FORMAT.

Every JSON line names the process that wrote it (``replica``: a control plane's VOICEFLEET_CONTROL_ID,
an agent's device id) and carries the ids a record was given as ``extra`` (``job_id``, ``device_id``,
``attempt``, ``event``...), so one job can be followed across replicas and devices.
"""

from __future__ import annotations

import json
import logging
import sys
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a LogRecord has of its own; anything else on a record came as ``extra``.
_OWN = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_replica = ""


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """The root logger's one handler, to standard error, in ``fmt``."""
    if fmt not in ("text", "json"):
        raise ValueError(f"VOICEFLEET_LOG_FORMAT={fmt!r}: give text or json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def set_replica(name: str) -> None:
    """Which process this is, for every JSON line from now on."""
    global _replica
    _replica = name


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3), "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                "level": record.levelname.lower(), "logger": record.name, "replica": _replica,
                "msg": record.getMessage()}
        line.update((k, v) for k, v in vars(record).items() if k not in _OWN and not k.startswith("_"))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
