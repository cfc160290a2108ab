#!/usr/bin/env bash
# Fuzzes the checkpoint reader (tests/fuzz/fuzz_checkpoint.c: safetensors parse, CRC
# verification, metadata parsing, restore) with libFuzzer + ASan + UBSan for a number
# of seconds on a scratch copy of tests/fuzz/corpus_checkpoint. Not part of ctest
# (ctest replays the corpus through tests/fuzz/replay.c).
# Usage: bench/fuzz_checkpoint.sh [seconds=120] [extra libFuzzer flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-120}
[ $# -gt 0 ] && shift
work=${LOOM_FUZZ_DIR:-${TMPDIR:-/tmp}/loom-fuzz-ckpt}
mkdir -p "$work"
srcs=$(ls src/core/*.c src/io/*.c src/kernels/*.c src/kernels/ref/*.c src/kernels/cpu/*.c src/model/*.c src/optim/*.c)
echo "fuzz_checkpoint.sh: building $work/fuzz_checkpoint"
${CC_FUZZ:-clang} -std=c11 -g -O1 -D_GNU_SOURCE -DLOOM_VERSION='"fuzz"' -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc -fopenmp \
  tests/fuzz/fuzz_checkpoint.c $srcs -ldnnl -lm -o "$work/fuzz_checkpoint"
rm -rf "$work/corpus" && cp -r tests/fuzz/corpus_checkpoint "$work/corpus"
OMP_NUM_THREADS=1 "$work/fuzz_checkpoint" -max_total_time="$secs" -max_len=65536 -timeout=10 \
  -artifact_prefix="$work/" -print_final_stats=1 "$@" "$work/corpus"
