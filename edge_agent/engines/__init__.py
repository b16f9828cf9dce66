"""Engines by name. Imports are lazy so an agent loads only the engine it runs."""

from __future__ import annotations

from edge_agent.engines.base import Engine, EngineUnavailable


def load_engine(name: str) -> Engine:
    if name == "espeak":
        from edge_agent.engines.espeak import EspeakEngine

        return EspeakEngine()
    if name == "tone":
        from edge_agent.engines.tone import BenchmarkToneEngine

        return BenchmarkToneEngine()
    raise EngineUnavailable(f"unknown engine {name!r}; VOICEFLEET_ENGINE must be one of: espeak, tone")
