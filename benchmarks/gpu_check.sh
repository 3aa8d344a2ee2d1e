#!/usr/bin/env bash
# The GPU check of issue 23, in one go on a fresh GPU machine (about 6 minutes on one H200; under 8):
#   1. install: ecgadapt into the Python whose torch has CUDA (README: install the CUDA build of torch first),
#      with pytest; offline, WHEELS=DIR installs from a folder of wheels (wfdb and whatever else is missing);
#   2. the GPU tests (pytest -m gpu: bf16 autocast and fused AdamW in the fit loop, scores in float32, NCCL on
#      two GPUs where there are two);
#   3. benchmarks/bench_models.py --devices cuda for every registered model: training and inference samples/s,
#      peak memory, FLOPs per sample and model FLOPs utilisation against the H200's bf16 dense peak;
#   4. benchmarks/gpu_cell.py: one paper-main cell on a full-size synthetic PTB-XL (21,799 records at 500 Hz)
#      for a fixed number of steps, its wall time extrapolated to the whole grid.
# Everything it writes lands under $OUT (default ./gpu-check): log.txt, gpu_tests.txt, bench_models.{json,md},
# cell.{json,md} and summary.md (the tables for README, with the date and the device). Each step runs under its
# own time limit, a failed step does not stop the others, and the exit status says whether all passed.
#
#   bash benchmarks/gpu_check.sh             # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run   # the same steps on the CPU with tiny sizes, no install (CI runs it)
#
# Environment: OUT (results), PYTHON (default python3), WORK (dataset, cache and runs; default a temporary
# folder, removed at the end unless KEEP_WORK is set), WHEELS (offline install), RECORDS and STEPS (the cell's
# size; default 21799 and 60).
set -uo pipefail

DRY=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg (use --dry-run or nothing)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/gpu-check}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
WORK_GIVEN=${WORK:+1}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/ecgadapt-gpu-check.XXXXXX")}
PY=${PYTHON:-python3}
exec > >(tee "$OUT/log.txt") 2>&1

if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    RECORDS=${RECORDS:-200}
    STEPS=${STEPS:-4}
    MODELS=(--models ecg_vit_tiny xresnet1d_tiny)
    BENCH_SIZES=(--batch-size 4 --iters 1 --warmup 0 --repeats 1 --threads 1)
    CELL_SETS=(
        --workers 1
        --set "models=[{name: ecg_vit_tiny, weights: null, kwargs: {width: 16, depth: 1, heads: 1, patch_size: 250}}]"
        --set "training.batch_size=16"
    )
    LIMIT_INSTALL=60 LIMIT_TESTS=120 LIMIT_BENCH=120 LIMIT_CELL=120
else
    DEVICE=cuda
    RECORDS=${RECORDS:-21799}
    STEPS=${STEPS:-60}
    MODELS=()
    BENCH_SIZES=()
    CELL_SETS=()
    LIMIT_INSTALL=90 LIMIT_TESTS=90 LIMIT_BENCH=120 LIMIT_CELL=160  # with 20 s for the CUDA check: 8 minutes
fi
OFFLINE=()
[ -n "${WHEELS:-}" ] && OFFLINE=(--no-index --find-links "$WHEELS")
mapfile -t GPU_TEST_FILES < <(grep -rl --include='*.py' "mark.gpu" tests | sort)

SUMMARY=()
FAILED=0
step() {  # step NAME LIMIT_S LOG|- COMMAND...: run it under a time limit (its output also into LOG), record how
    local name=$1 limit=$2 log=$3
    shift 3
    local t0=$SECONDS rc
    echo "=== $name (limit ${limit} s): $*"
    if [ "$log" = - ]; then
        timeout --kill-after=10 "$limit" "$@"
        rc=$?
    else
        timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
    fi
    local took=$((SECONDS - t0)) status=ok
    if [ "$rc" -ne 0 ]; then
        status="failed (exit $rc$([ "$rc" -eq 124 ] && echo ', time limit'))"
        FAILED=1
    fi
    echo "=== $name: $status in ${took} s"
    SUMMARY+=("| $name | $status | $took |")
}

export PYTHONUNBUFFERED=1
echo "gpu_check.sh $([ "$DRY" = 1 ] && echo '--dry-run ')in $ROOT -> $OUT (work: $WORK), $(date -u +%FT%TZ)"
if [ "$DRY" = 1 ]; then
    step install "$LIMIT_INSTALL" - "$PY" -c \
        "import sys, ecgadapt, pytest, torch; print('dry run: nothing installed; using', sys.executable, 'torch', torch.__version__)"
else
    step "CUDA torch" 20 - "$PY" -c "import torch; assert torch.cuda.is_available(), 'this torch sees no GPU: install \
the CUDA build of torch that matches the machine first (README)'; print(torch.__version__, torch.cuda.get_device_name(0))"
    step install "$LIMIT_INSTALL" - "$PY" -m pip install -q ${OFFLINE[@]+"${OFFLINE[@]}"} -e . pytest
fi
step "GPU tests" "$LIMIT_TESTS" "$OUT/gpu_tests.txt" \
    "$PY" -m pytest -m gpu -p no:cacheprovider -rs -q "${GPU_TEST_FILES[@]}"
step "bench_models.py" "$LIMIT_BENCH" - \
    "$PY" benchmarks/bench_models.py --devices "$DEVICE" ${MODELS[@]+"${MODELS[@]}"} \
    ${BENCH_SIZES[@]+"${BENCH_SIZES[@]}"} --out "$OUT/bench_models.json" --markdown "$OUT/bench_models.md"
step "paper-main cell" "$LIMIT_CELL" - \
    "$PY" benchmarks/gpu_cell.py --work "$WORK" --out "$OUT/cell.json" --markdown "$OUT/cell.md" \
    --records "$RECORDS" --steps "$STEPS" --device "$DEVICE" ${CELL_SETS[@]+"${CELL_SETS[@]}"}

{
    echo "# GPU check, $(date -u +%F)$([ "$DRY" = 1 ] && echo ' (dry run on the CPU, tiny sizes)')"
    echo
    "$PY" -c "import platform, torch; d = torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
platform.processor() or 'cpu'; print(f'Device: {d}; torch {torch.__version__}, CUDA {torch.version.cuda}; commit', end=' ')"
    git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown
    echo
    echo "| step | status | seconds |"
    echo "|---|---|---:|"
    printf '%s\n' "${SUMMARY[@]}"
    echo
    echo "## GPU tests"
    echo
    tail -n 1 "$OUT/gpu_tests.txt" 2>/dev/null || echo "(no output)"
    echo
    echo "## Models (bench_models.py)"
    echo
    cat "$OUT/bench_models.md" 2>/dev/null || echo "(no table)"
    echo
    echo "## One paper-main cell, extrapolated (gpu_cell.py)"
    echo
    cat "$OUT/cell.md" 2>/dev/null || echo "(no table)"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
[ -z "$WORK_GIVEN" ] && [ -z "${KEEP_WORK:-}" ] && rm -rf "$WORK"
exit "$FAILED"
