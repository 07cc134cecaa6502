#!/usr/bin/env bash
# Runs ON THE DEVICE MACHINE (the `run` tool's command), from the repository root. See
# docs/embed.md ("GPU") for the sequence of calls and what to record.
#   benchmarks/gpu/device.sh stage N     keep onnxruntime-gpu part N (carried as .ortgpu/pN) in /tmp;
#                                        also prints the GPU and whether the image's onnxruntime has CUDA
#   benchmarks/gpu/device.sh bench [ARGS] install the carried wheels (+ onnxruntime-gpu from the parts
#                                        when the image's has no CUDA), build the C++ extension, run
#                                        benchmarks/bench_gpu_embed.py --device cuda ARGS; results in $OUT
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/.bench/gpu}
mkdir -p "$OUT" /tmp/fc-ort
t0=$(date +%s)

ort_has_cuda() {
  "$PY" -c 'import onnxruntime as o, sys; sys.exit(0 if "CUDAExecutionProvider" in o.get_available_providers() else 1)' 2>/dev/null
}

case "${1:-}" in
stage)
  n=${2:?part number}
  cp ".ortgpu/p$n"/* /tmp/fc-ort/ || exit 1
  ls -la /tmp/fc-ort
  nvidia-smi -L || true
  if ort_has_cuda; then echo "IMAGE ONNXRUNTIME HAS CUDA: no parts needed, run 'bench' now"; fi
  echo "stage $n done in $(( $(date +%s) - t0 )) s"
  ;;
bench)
  shift
  {
    set -e
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    if ! ort_has_cuda; then
      name=$(awk '{print $2}' /tmp/fc-ort/SHA256)
      cat /tmp/fc-ort/part.* > "/tmp/fc-ort/$name"
      (cd /tmp/fc-ort && sha256sum -c SHA256)
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-ort "/tmp/fc-ort/$name"
      export PYTHONPATH=/tmp/site-ort:$PYTHONPATH
    fi
    "$PY" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
    echo "installs done in $(( $(date +%s) - t0 )) s"
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) scripts/dev_build.sh "$PY" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
    echo "build done in $(( $(date +%s) - t0 )) s"
    set +e
    PYTHONPATH=python:$PYTHONPATH "$PY" benchmarks/bench_gpu_embed.py --device cuda --out "$OUT" "$@" 2>&1 | tee "$OUT/bench.log"
    rc=${PIPESTATUS[0]}
    echo "bench exit $rc after $(( $(date +%s) - t0 )) s in all"
    exit "$rc"
  }
  ;;
*)
  echo "usage: $0 stage N | bench [bench_gpu_embed.py args]" >&2
  exit 2
  ;;
esac
