#!/usr/bin/env bash
# Per-rank memory with ZeRO-1, ZeRO-2 and without, at 1, 2 and 4 ranks (the start-up line of one
# training step of PRESET; oversubscribed on a small machine, which does not change bytes).
# usage: bench/bench_zero_mem.sh [BUILD_DIR=build] [PRESET=small]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
preset=${2:-small}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "bench_zero_mem.sh: preset $preset, micro-batch 1 x 64, 4 micro-batches per step"
for n in 1 2 4; do
  for z in 0 1 2; do
    line=$(mpirun --oversubscribe --mca mpi_yield_when_idle 1 -np $n "$build/loom" train --model "$preset" \
      --data data/tinyshakespeare_train.bin --batch 1 --seq-len 64 --total-batch-tokens 256 --steps 1 --zero $z \
      --threads 1 --peak-gflops 100 --out "$out/r" 2>&1 | grep '^memory per rank')
    echo "ranks $n, --zero $z: ${line#memory per rank: }"
  done
done
