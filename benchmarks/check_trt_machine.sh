#!/usr/bin/env bash
# One command that verifies a GPU machine with TensorRT for cp3rt (issue 15):
#
#   bash benchmarks/check_trt_machine.sh [MODEL] [IMAGES_DIR]     (defaults: cyto3, no images)
#
# 1. `cp3rt info`: versions, the TensorRT/CUDA-bindings/driver match, the GPU.
# 2. `cp3rt check MODEL --backend trt --precision fp16`: builds (or reuses) the plan, runs it on
#    the same tiles as the torch reference on the CPU, prints the worst error per output and the
#    mask AP, exits non-zero when either is out of tolerance.
# 3. `benchmarks/bench_gpu.py --quick --trt-precisions fp16`: tiles/s per batch size and the end
#    to end against the reference on the same GPU (needs the `test` extra for the reference).
# Reports go to ${OUT:-trt_check_out}/. Stops at the first failing step, naming it.
set -uo pipefail
MODEL=${1:-cyto3}
IMAGES=${2:-}
OUT=${OUT:-trt_check_out}
mkdir -p "$OUT"
fail() { echo "check_trt_machine: step '$1' failed (exit $2); see $OUT/" >&2; exit "$2"; }

cp3rt info | tee "$OUT/info.txt" || fail "cp3rt info" $?
args=(check "$MODEL" --backend trt --precision fp16 --json "$OUT/check_trt_fp16.json")
[ -n "$IMAGES" ] && args+=(--images "$IMAGES")
cp3rt "${args[@]}" | tee "$OUT/check_trt_fp16.txt" || fail "cp3rt check --backend trt" $?
python3 "$(dirname "$0")/bench_gpu.py" --quick --trt-precisions fp16 --torch-precisions fp16 --out "$OUT" \
    || fail "bench_gpu" $?
echo "check_trt_machine: all steps passed; reports in $OUT/"
