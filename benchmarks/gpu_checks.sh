#!/usr/bin/env bash
# The GPU checks of one lent GPU machine, in as few device calls as possible.
#
#   benchmarks/gpu_checks.sh carry    HERE, before the device calls: wheels the GPU image lacks into
#                                     .whl/ and 8 images per nuclei set into .gpucarry/ (both
#                                     git-ignored via .git/info/exclude); then pass
#                                     carry=[".whl", ".gpucarry"] to each device call. The trained
#                                     starter weights are recovered from the shipped ONNX there.
#   benchmarks/gpu_checks.sh issue16  THE ONE CALL for issue 16's must-shows (fits one 600 s command): bench_gpu_resident
#                                     (latency, 200-image folder, reference, 2048^2 memory in a fresh process, masks,
#                                     a pass/fail table against the bars), bench_stream with torch-cuda (stream vs
#                                     one-at-a-time on 200 images), then the GPU tests
#   benchmarks/gpu_checks.sh resident the GPU-resident path vs the host path vs the reference (latency, folder,
#                                     memory of 2048^2, masks), then the GPU tests (bench_gpu_resident.py)
#   benchmarks/gpu_checks.sh cores    the many-core host half of issue 16 (item 4) on the machine's CPUs, no GPU:
#                                     bench_cores.py (GIL, GIL convoy, folder through the streaming engine with
#                                     3 / default / 16 workers; needs no carry; chain after `resident` in one call)
#   benchmarks/gpu_checks.sh warm     compiled engines: cold vs warm start through the compile cache,
#                                     host staging tiles/s, 1024^2 latency (bench_gpu_warm_start.py)
#   benchmarks/gpu_checks.sh net      the prepared call of issues 16/17: bench_gpu_net.py (net variants,
#                                     kernel breakdown, reference in the same run), the GPU tests,
#                                     then bench_dynamics_gpu.py (numba-cuda dynamics vs the CPU)
#   benchmarks/gpu_checks.sh main     GPU tests (torch-CUDA backend vs the reference net), then
#                                     bench_gpu.py --quick (reference on the same GPU in the same run)
#   benchmarks/gpu_checks.sh bench    bench_gpu.py only, with $BENCH_ARGS (e.g. --starters for the trained weights)
#   benchmarks/gpu_checks.sh more     bench_fp16_masks.py on the GPU (trained weights and images
#                                     recovered from the shipped ONNX, images in .gpucarry/data),
#                                     then bench_stream.py with the torch-CUDA engine
#
# Runs from the repository root with the machine's own python3 (PyTorch + CUDA). Packages that
# machine lacks (the cellpose==3.1.1.2 oracle and its compiled helpers, platformdirs) travel as
# wheels in .whl/ (see /work/.library/device/README.md); cp3rt itself runs from src/. Logs and
# results go to $OUT (or /tmp/cp3rt_gpu_out); each step has its own time limit so that one
# hanging step cannot eat the others' time.
set -u
if [ "${1:-}" = carry ]; then
    mkdir -p .git/info; touch .git/info/exclude
    grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
    grep -qx '/.gpucarry/' .git/info/exclude || echo /.gpucarry/ >> .git/info/exclude
    for spec in cellpose==3.1.1.2 natsort roifile platformdirs fastremap fill_voids; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$spec" || exit 3
    done
    mkdir -p .gpucarry
    for set in ctc_gowt1_nuclei ctc_sim_nuclei stardist_dsb2018_nuclei; do
        mkdir -p ".gpucarry/data/$set/images"
        find "../shared/data/$set/images" -maxdepth 1 -name '*.tif' | sort | head -8 \
            | xargs -I{} cp {} ".gpucarry/data/$set/images/"
    done
    du -sh .whl .gpucarry
    exit 0
fi
OUT=${OUT:-/tmp/cp3rt_gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=src
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 3
    export PYTHONPATH=src:/tmp/site
fi
LOG="$OUT/log_${1:-main}.txt"
step() { echo "=== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }

environment() {
    step environment
    { nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
      nproc
      python3 -c "import sys, torch, numpy, numba, onnxruntime, cellpose, cp3rt; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'numpy', numpy.__version__, 'numba', numba.__version__, 'ort', onnxruntime.__version__, 'gpu', torch.cuda.get_device_name(0))"
    } 2>&1 | tee -a "$LOG"
}

case "${1:-main}" in
net)
    environment
    step "bench_gpu_net"
    timeout "${NET_S:-330}" python3 benchmarks/bench_gpu_net.py --images .gpucarry/data --out "$OUT" \
        --budget-s "${NET_BUDGET_S:-270}" 2>&1 | tee -a "$LOG"
    step "GPU tests"
    timeout "${TESTS_S:-150}" python3 -m pytest -q -p no:cacheprovider -rs -m gpu \
        tests/engines/test_torch_cuda.py tests/runtime/dynamics/test_dynamics_cuda.py 2>&1 | tee -a "$LOG"
    step "bench_dynamics_gpu"
    timeout "${DYN_S:-100}" python3 benchmarks/bench_dynamics_gpu.py --out "$OUT" 2>&1 | tee -a "$LOG"
    ;;
issue16)
    environment
    step "bench_gpu_resident"
    timeout "${RESIDENT_S:-270}" python3 benchmarks/bench_gpu_resident.py --images .gpucarry/data --out "$OUT" 2>&1 | tee -a "$LOG"
    step "bench_stream torch-cuda (stream vs one at a time, 200 images)"
    timeout "${STREAM_S:-150}" python3 benchmarks/bench_stream.py --backend torch-cuda --repeats 1 \
        --out stream_gpu 2>&1 | tee -a "$LOG"
    cp benchmarks/results/stream_gpu.* "$OUT"/ 2>/dev/null
    step "GPU tests"
    timeout "${TESTS_S:-120}" python3 -m pytest -q -p no:cacheprovider -rs -m gpu \
        tests/engines/test_torch_cuda.py tests/runtime/dynamics/test_dynamics_cuda.py 2>&1 | tee -a "$LOG"
    ;;
resident)
    environment
    step "bench_gpu_resident"
    timeout "${RESIDENT_S:-300}" python3 benchmarks/bench_gpu_resident.py --images .gpucarry/data --out "$OUT" 2>&1 | tee -a "$LOG"
    step "GPU tests"
    timeout "${TESTS_S:-150}" python3 -m pytest -q -p no:cacheprovider -rs -m gpu \
        tests/engines/test_torch_cuda.py tests/runtime/dynamics/test_dynamics_cuda.py 2>&1 | tee -a "$LOG"
    ;;
cores)
    environment
    step "bench_cores"
    timeout "${CORES_S:-280}" python3 benchmarks/bench_cores.py --n-images "${CORES_IMAGES:-80}" --rounds 2 \
        --gil-seconds 3 --stream plain auto auto@0.5 3 16x1 --out cores_16 2>&1 | tee -a "$LOG"
    cp benchmarks/results/cores_16.* "$OUT"/ 2>/dev/null
    ;;
warm)
    environment
    step "bench_gpu_warm_start"
    timeout "${WARM_S:-190}" python3 benchmarks/bench_gpu_warm_start.py --images .gpucarry/data --out "$OUT" 2>&1 | tee -a "$LOG"
    ;;
main)
    step environment
    { nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
      nproc
      python3 -c "import sys, torch, numpy, numba, onnxruntime, cellpose, cp3rt; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'numpy', numpy.__version__, 'numba', numba.__version__, 'ort', onnxruntime.__version__, 'gpu', torch.cuda.get_device_name(0))"
    } 2>&1 | tee -a "$LOG"
    step "GPU tests"
    timeout 150 python3 -m pytest -q -p no:cacheprovider -rs \
        tests/engines/test_torch_cuda.py tests/engines/test_torch_cuda_bench.py 2>&1 | tee -a "$LOG"
    step "bench_gpu --quick"
    timeout "${BENCH_S:-330}" python3 benchmarks/bench_gpu.py --quick --out "$OUT" 2>&1 | tee -a "$LOG"
    ;;
bench)
    step "bench_gpu $BENCH_ARGS"
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of arguments
    timeout "${BENCH_S:-330}" python3 benchmarks/bench_gpu.py $BENCH_ARGS --out "$OUT" 2>&1 | tee -a "$LOG"
    ;;
more)
    step "bench_fp16_masks torch-cuda"
    timeout "${MASKS_S:-200}" python3 benchmarks/bench_fp16_masks.py --backend torch-cuda \
        --data .gpucarry/data --out fp16_masks_gpu 2>&1 | tee -a "$LOG"
    cp benchmarks/results/fp16_masks_gpu.* "$OUT"/ 2>/dev/null
    step "bench_stream torch-cuda"
    timeout "${STREAM_S:-300}" python3 benchmarks/bench_stream.py --backend torch-cuda \
        --repeats "${REPEATS:-2}" --out stream_gpu 2>&1 | tee -a "$LOG"
    cp benchmarks/results/stream_gpu.* "$OUT"/ 2>/dev/null
    ;;
esac
step done
