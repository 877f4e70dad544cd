#!/usr/bin/env bash
# GPU check: trains the same tiny recipe (`gpu-check` in workspace.toml) on CPU (burn-flex, f32) and on CUDA
# (burn-cuda, bf16), then compares the two loss curves and prints tokens/s and MFU.
# Run it on a machine with an NVIDIA GPU and driver; it needs no CUDA toolkit (NVRTC and the driver load at run time).
#   scripts/gpu-check.sh                      # PEAK_TFLOPS defaults to 989 (H100 SXM, dense bf16)
#   PEAK_TFLOPS=1979 scripts/gpu-check.sh     # e.g. for a peak with sparsity, or another GPU's figure
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/physlab-gpu-check}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
TOLERANCE=${TOLERANCE:-0.05}
cargo build --release --features cuda
rm -rf "$OUT"
./target/release/physlab run gpu-check --backend cpu --runs "$OUT/cpu"
./target/release/physlab run gpu-check --backend cuda --runs "$OUT/cuda"
python3 scripts/compare_metrics.py "$OUT/cpu/gpu-check/base/s0" "$OUT/cuda/gpu-check/base/s0" \
  --tolerance "$TOLERANCE" --peak-tflops "$PEAK_TFLOPS"
