#!/usr/bin/env bash
# Fuzzes one of loom's parsers with libFuzzer + ASan + UBSan for a number of seconds, on a
# scratch copy of its seed corpus. Not part of ctest.
# Usage: bench/fuzz.sh [TARGET=safetensors] [seconds=60] [extra libFuzzer flags...]
# Targets:
#   safetensors  the safetensors reader and JSON parser (tests/fuzz/fuzz_safetensors.c),
#                seeds from tests/fuzz/corpus
#   tokenizer    the GPT-2 tokenizer: both loaders, encode/decode round trips, the two
#                merge algorithms (tests/fuzz/fuzz_tokenizer.c); seeds made from data/
#   jsonl        prep's JSON-lines reader (tests/fuzz/fuzz_jsonl.c), seeds from
#                tests/fuzz/corpus_jsonl
# Work dir (binaries, corpus copies, crash-* artifacts): $LOOM_FUZZ_DIR or /tmp/loom-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."

target=safetensors
case "${1:-}" in
  safetensors|tokenizer|jsonl) target=$1; shift ;;
  ''|[0-9]*) ;;
  *) echo "fuzz.sh: unknown target '$1' (safetensors, tokenizer, jsonl)" >&2; exit 2 ;;
esac
secs=${1:-60}
[ $# -gt 0 ] && shift
work=${LOOM_FUZZ_DIR:-${TMPDIR:-/tmp}/loom-fuzz}
cc=${CC_FUZZ:-clang}
flags=(-std=c11 -g -O1 -D_GNU_SOURCE -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc -fopenmp)

mkdir -p "$work"
echo "fuzz.sh: building $work/fuzz_$target with $cc"
corpus="$work/corpus_$target"
rm -rf "$corpus"
max_len=8192
if [ "$target" = safetensors ]; then
  corpus="$work/corpus"   # the name this script always used
  rm -rf "$corpus"
  "$cc" "${flags[@]}" tests/fuzz/fuzz_safetensors.c src/io/json.c src/io/safetensors.c src/core/*.c \
      -lm -o "$work/fuzz_safetensors"
  cp -r tests/fuzz/corpus "$corpus"
elif [ "$target" = jsonl ]; then
  "$cc" "${flags[@]}" -DLOOM_VERSION='"fuzz"' tests/fuzz/fuzz_jsonl.c src/data/prep.c src/data/tokenizer.c src/data/tokenizer_json.c \
      src/data/unicode_tables.c src/data/dataset.c src/dist/dist.c src/io/json.c src/core/*.c -lm -o "$work/fuzz_jsonl"
  cp -r tests/fuzz/corpus_jsonl/. "$corpus"
else
  "$cc" "${flags[@]}" tests/fuzz/fuzz_tokenizer.c src/data/tokenizer.c src/data/tokenizer_json.c src/data/unicode_tables.c \
      src/io/json.c src/core/*.c -lm -o "$work/fuzz_tokenizer"
  mkdir -p "$corpus"
  # seeds: the first byte picks the target (0 rank file, 1 encoder.json NUL vocab.bpe, 2 text)
  { printf '\000'; head -c 3000 data/gpt2/r50k_base.tiktoken; } > "$corpus/ranks"
  { printf '\001{"!": 0, "\\"": 1, "<|endoftext|>": 2}\000#version: 0.2\n! "\n'; } > "$corpus/gpt2"
  { printf '\002'; head -c 2000 data/tinyshakespeare.txt; } > "$corpus/text"
  { printf '\002'; cat tests/fixtures/gpt2_test_vectors.json; } | head -c 4000 > "$corpus/vectors"
  printf '\002 \xc2\xa0\xe3\x80\x80 x\xff\xed\xa0\x80 1\xd9\xa3 <|endoftext|>\n\n ' > "$corpus/mixed"
fi
echo "fuzz.sh: running for ${secs}s (artifacts go to $work/)"
"$work/fuzz_$target" -max_total_time="$secs" -max_len=$max_len -timeout=10 \
    -artifact_prefix="$work/" -print_final_stats=1 "$@" "$corpus"
