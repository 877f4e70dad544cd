#!/usr/bin/env bash
# The GPU check (issue 15): one prepared run on a machine with an NVIDIA GPU and driver but no Rust toolchain.
# Build the binary on a machine with Rust (its glibc needs stay at 2.35 or below: check with
# `objdump -T target/release/physlab | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1`), copy the repository with
# it, and run this script from the repository root:
#   cargo build --release --features cuda -p physlab            # on the build machine
#   scripts/gpu-check.sh                                         # on the GPU machine: writes $OUT/gpu-check.json
# Environment: PHYSLAB (the binary; default target/release/physlab), OUT (default /tmp/physlab-gpu-check),
# PEAK_TFLOPS (dense bf16 peak for the MFU; default 989, H100 SXM), BENCH_STEPS (default 20; 0 skips the bench),
# AUTOTUNE_CACHE (optional: $OUT/autotune-cache.tgz of an earlier check, for the fusion binary),
# DEADLINE (seconds for the whole check; default 540: each step gets at most what is left), NVRTC_DIR (a folder holding
# libnvrtc.so*, for a machine with neither a CUDA toolkit nor PyTorch's NVRTC wheel), PHYSLAB_FUSION (optional: a
# binary built with `--features cuda-fusion`, checked and timed after everything else), FUSION_AUTOTUNE_LEVEL
# (cubecl's autotune level for that binary; default minimal).
#
# What it runs, most important first (every step has its own time limit; a failed step is recorded and the others
# still run):
#   1. `gpu-check` on CPU in f32 and in bf16-mixed, and on CUDA in f32 and in bf16-mixed (the CUDA default);
#   2. the CPU-trained f32 weights evaluated on CUDA (a 1-step finetune at lr 1e-30, which leaves f32 weights
#      unchanged): the evaluator's numbers on both backends for the same weights;
#   3. `physlab bench train --backend cuda --torch`: GPT2-12-12 at context 512, steady-state tokens/s and MFU,
#      burn in bf16-mixed and f32, PyTorch (bf16 autocast, SDPA and naive attention, fused AdamW) where installed;
#   4. scripts/gpu_check.py: compares the bits and loss curves at the tolerances it states, and writes
#      $OUT/gpu-check.json with everything. Exit status 1 when a comparison is outside its tolerance.
set -uo pipefail
cd "$(dirname "$0")/.."
PHYSLAB=${PHYSLAB:-target/release/physlab}
OUT=${OUT:-/tmp/physlab-gpu-check}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
BENCH_STEPS=${BENCH_STEPS:-20}
DEADLINE=${DEADLINE:-540}

if [ ! -e /dev/nvidiactl ]; then
  echo "gpu-check: no NVIDIA GPU on this machine (/dev/nvidiactl is missing): run it on a GPU machine" >&2
  exit 1
fi
if [ ! -x "$PHYSLAB" ]; then
  echo "gpu-check: no physlab binary at $PHYSLAB: build it with \`cargo build --release --features cuda -p physlab\` and copy it here (or set PHYSLAB)" >&2
  exit 1
fi
mkdir -p "$OUT"
if [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
  echo "gpu-check: $OUT is not empty: choose another OUT (nothing is deleted)" >&2
  exit 1
fi

# NVRTC compiles burn-cuda's kernels at run time; without a CUDA toolkit, PyTorch's wheels bring one.
if [ -n "${NVRTC_DIR:-}" ]; then
  export LD_LIBRARY_PATH="$NVRTC_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "gpu-check: NVRTC from $NVRTC_DIR"
elif ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  for d in $(python3 -c 'import site,glob; print(" ".join(sorted({p.rsplit("/",1)[0] for s in site.getsitepackages() for p in glob.glob(s+"/nvidia/*/lib/libnvrtc.so*")})))' 2>/dev/null) \
           /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    if ls "$d"/libnvrtc.so* >/dev/null 2>&1; then
      export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      echo "gpu-check: NVRTC from $d"
      break
    fi
  done
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true; } > "$OUT/nvidia-smi.txt" 2>&1
cat "$OUT/nvidia-smi.txt"
nproc > "$OUT/nproc.txt"

step() { # step NAME LIMIT_S COMMAND...: runs it, logs to $OUT/NAME.log, records its exit status and seconds
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS left=$((DEADLINE - SECONDS))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -le 5 ]; then
    echo "{\"step\": \"$name\", \"rc\": \"skipped: past the deadline\"}" >> "$OUT/steps.jsonl"
    return 1
  fi
  echo "== $name: $*"
  # physlab stops at the end of the step it is in on SIGTERM (with a checkpoint); a step stuck in burn's first-use
  # autotuning took 193 s past its limit to get there, so it is killed 20 s after the limit.
  timeout -k 20 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0))}" >> "$OUT/steps.jsonl"
  tail -n 3 "$OUT/$name.log"
  return $rc
}

# The CPU runs need nothing the GPU runs need: they run beside them, in the background (bf16-mixed on the CPU is
# slow: burn-flex converts bf16 element by element).
step cpu-f32 600 "$PHYSLAB" run gpu-check --backend cpu --runs "$OUT/cpu-f32" &
cpu1=$!
step cpu-bf16 600 "$PHYSLAB" run gpu-check --backend cpu --set train.precision=bf16-mixed --runs "$OUT/cpu-bf16" &
cpu2=$!

step cuda-bf16 180 "$PHYSLAB" run gpu-check --backend cuda --runs "$OUT/cuda-bf16"
# The evaluator on CUDA for the CPU's f32 weights (waits for the CPU run's checkpoint).
for _ in $(seq 1 60); do
  final=$(ls -d "$OUT"/cpu-f32/gpu-check/*/s0/checkpoints/final 2>/dev/null | head -n 1)
  [ -n "$final" ] && [ -e "$final/DONE" ] && break
  sleep 2
done
if [ -n "$final" ]; then
  step cuda-eval 120 "$PHYSLAB" run gpu-check --backend cuda --runs "$OUT/cuda-eval" \
    --set "train.init_from=$(cd "$final" && pwd)" --set train.steps=1 --set train.lr=1e-30 \
    --set train.weight_decay=0 --set train.precision=f32
fi
step cuda-f32 150 "$PHYSLAB" run gpu-check --backend cuda --set train.precision=f32 --runs "$OUT/cuda-f32"
# The bench waits for the CPU runs (which get what is left of the deadline, then stop), so that its steps are timed
# on an otherwise idle host: the second H100 run timed it beside the CPU bf16-mixed run (an idle-host rerun gave
# the same figures, but a timing should not depend on that).
while kill -0 $cpu1 2>/dev/null || kill -0 $cpu2 2>/dev/null; do
  [ $SECONDS -ge "$DEADLINE" ] && break
  sleep 2
done
pkill -P $cpu1 2>/dev/null; pkill -P $cpu2 2>/dev/null
wait 2>/dev/null
[ "$BENCH_STEPS" -gt 0 ] && step bench 240 "$PHYSLAB" bench train --backend cuda --torch --steps "$BENCH_STEPS" --peak-tflops "$PEAK_TFLOPS" --json "$OUT/bench.json"
# cubecl keeps what autotuning found in target/autotune under the working folder (it finds Cargo.toml there):
# AUTOTUNE_CACHE (a .tgz this script wrote before) is unpacked first, and what is there at the end is written to
# $OUT/autotune-cache.tgz, so that a later check on the same GPU starts from it.
if [ -n "${AUTOTUNE_CACHE:-}" ] && [ -e "$AUTOTUNE_CACHE" ]; then
  mkdir -p target && tar xzf "$AUTOTUNE_CACHE" -C target && echo "gpu-check: autotune cache from $AUTOTUNE_CACHE"
fi
if [ -n "${PHYSLAB_FUSION:-}" ]; then
  # cubecl's autotuning at its default level took up to ~20 s per matmul shape on the first H100 run and did not
  # finish; at minimal, the second run was still in step 1 after 343 s (38 shapes tuned); FUSION_AUTOTUNE_LEVEL (cubecl's CUBECL_AUTOTUNE_LEVEL: minimal, balanced, extensive, full) sets it.
  export CUBECL_AUTOTUNE_LEVEL=${FUSION_AUTOTUNE_LEVEL:-minimal}
  echo "gpu-check: burn fusion with cubecl autotune level $CUBECL_AUTOTUNE_LEVEL"
  step fusion-bf16 150 "$PHYSLAB_FUSION" run gpu-check --backend cuda --runs "$OUT/fusion-bf16"
  [ "$BENCH_STEPS" -gt 0 ] && step fusion-bench 240 "$PHYSLAB_FUSION" bench train --backend cuda --steps "$BENCH_STEPS" --peak-tflops "$PEAK_TFLOPS" --json "$OUT/bench-fusion.json"
  unset CUBECL_AUTOTUNE_LEVEL
fi
[ -d target/autotune ] && tar czf "$OUT/autotune-cache.tgz" -C target autotune
python3 scripts/gpu_check.py "$OUT" --peak-tflops "$PEAK_TFLOPS"
