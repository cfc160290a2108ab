#!/usr/bin/env bash
# Fuzzes the safetensors reader and JSON parser (tests/fuzz/fuzz_safetensors.c) with
# libFuzzer + ASan + UBSan for a number of seconds, on a scratch copy of the seed corpus.
# Not part of ctest. Usage: bench/fuzz.sh [seconds=60] [extra libFuzzer flags...]
# Work dir (binary, corpus copy, crash-* artifacts): $LOOM_FUZZ_DIR or /tmp/loom-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
[ $# -gt 0 ] && shift
work=${LOOM_FUZZ_DIR:-${TMPDIR:-/tmp}/loom-fuzz}
cc=${CC_FUZZ:-clang}

mkdir -p "$work"
echo "fuzz.sh: building $work/fuzz_safetensors with $cc"
"$cc" -std=c11 -g -O1 -D_GNU_SOURCE -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Iinclude -Isrc -fopenmp \
    tests/fuzz/fuzz_safetensors.c src/io/json.c src/io/safetensors.c src/core/*.c \
    -lm -o "$work/fuzz_safetensors"

rm -rf "$work/corpus"
cp -r tests/fuzz/corpus "$work/corpus"
echo "fuzz.sh: running for ${secs}s (artifacts go to $work/)"
"$work/fuzz_safetensors" -max_total_time="$secs" -max_len=8192 -timeout=10 \
    -artifact_prefix="$work/" -print_final_stats=1 "$@" "$work/corpus"
