#!/usr/bin/env bash
# CosyVoice3 on a lent GPU, in at most 8 minutes: the full-size stand-in of CosyVoice3
# (benchmarks/cosyvoice3_standin.py: CosyVoice3's dimensions, random weights) built on CUDA, the
# CosyVoice3 engine's tests run on it, then first-chunk latency and RTF at 1, 2 and 4 streams, fp32
# and fp16, for the engine alone (the whole path needs Mosquitto and our server stack, which the GPU
# machine lacks; benchmarks/cloud.py runs it wherever they are).
#
# The GPU machine has python3 with torch, numpy, nvidia-ml-py, pytest and pytest-timeout, no network
# and none of our other dependencies, so they travel as wheels in .whl (git-ignored):
#   1. here, with a network:  bash scripts/gpu_check.sh prepare
#   2. the device tool:       run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)
#      its figures come back in $OUT (gpu-check.log, cloud-fp32.json, cloud-fp16.json).
# A dry run on the CPU, small size:  GPU_CHECK_DEVICE=cpu GPU_CHECK_SIZE=small bash scripts/gpu_check.sh
# Settings: GPU_CHECK_DEVICE (cuda), GPU_CHECK_SIZE (full), GPU_CHECK_JOBS per level (8), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${GPU_CHECK_DEVICE:-cuda}
SIZE=${GPU_CHECK_SIZE:-full}
JOBS=${GPU_CHECK_JOBS:-8}
PY=${PYTHON:-python3}
# What the engine, its tests and the benchmark import beyond the GPU image (its python is 3.12):
# pydantic for the protocol and settings, soundfile for WAVs, espeakng-loader for the chain's next engine.
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
        annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
        soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 espeakng-loader==0.2.4)

if [[ ${1:-} == prepare ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    platforms=()
    for n in 2_28 2_27 2_17 2014 1 2_24 2_31 2_34; do
        [[ $n == 2014 || $n == 1 ]] && platforms+=(--platform "manylinux${n}_x86_64") \
            || platforms+=(--platform "manylinux_${n}_x86_64")
    done
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .whl "${WHEELS[@]}"
    du -sh .whl
    exit 0
fi

OUT=${OUT:-$(mktemp -d)}
exec > >(tee "$OUT/gpu-check.log") 2>&1
if ! "$PY" -c "import pydantic_settings, soundfile, espeakng_loader" 2>/dev/null; then  # a bare GPU machine
    compgen -G ".whl/*.whl" > /dev/null || { echo "no .whl/: run 'bash scripts/gpu_check.sh prepare' first"; exit 1; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 VOICEFLEET_HOME=${VOICEFLEET_HOME:-$(mktemp -d)}
[[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

echo "== the $SIZE stand-in on $DEVICE"
"$PY" - "$SIZE" "$DEVICE" <<'EOF'
import sys, time
import torch
from benchmarks.cosyvoice3_standin import CosyVoice3ComputeStandIn
size, device = sys.argv[1:]
t0 = time.perf_counter()
model = CosyVoice3ComputeStandIn(size, device)
if device == "cuda":
    torch.cuda.synchronize()
params = {name: round(sum(p.numel() for p in getattr(model, name).parameters()) / 1e6, 1) for name in ("llm", "flow", "hift")}
print(f"torch {torch.__version__}, built in {time.perf_counter() - t0:.1f} s, parameters (M): {params}")
if device == "cuda":
    print(f"GPU memory allocated: {torch.cuda.memory_allocated() / 2**20:.0f} MiB on {torch.cuda.get_device_name()}")
EOF

echo "== the CosyVoice3 engine's tests on the $SIZE stand-in ($DEVICE where upstream picks it: CUDA when present)"
# --noconftest: tests/conftest.py starts PostgreSQL and Mosquitto fixtures this file does not use
COSYVOICE3_STANDIN_SIZE=$SIZE timeout 240 "$PY" -m pytest -q -p no:cacheprovider --noconftest \
    tests/edge_agent/test_cosyvoice3_serving.py tests/edge_agent/test_cosyvoice3_engine.py || echo "ENGINE TESTS FAILED"

for precision in fp32 fp16; do
    echo "== engine alone, $precision, $JOBS jobs at each of 1, 2, 4 streams"
    flag=(); [[ $precision == fp16 ]] && flag=(--fp16)
    timeout 150 "$PY" benchmarks/cloud.py --engine-only --device "$DEVICE" --size "$SIZE" --jobs "$JOBS" "${flag[@]}" \
        --json > "$OUT/cloud-$precision.json" || echo "BENCHMARK $precision FAILED"
    "$PY" -c 'import json, sys; from benchmarks.cloud import print_table; print_table(json.load(open(sys.argv[1])))' \
        "$OUT/cloud-$precision.json" || true
done
