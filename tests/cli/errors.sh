#!/usr/bin/env bash
# Bad input of every kind: one clear error line naming the file or flag, non-zero exit,
# never a crash.
source "$(dirname "$0")/lib.sh"
DATA=data/tinyshakespeare_val.bin
T="--model tiny --n-layer 1 --n-embd 32 --n-head 2 --batch 2 --seq-len 16 --steps 1 --quiet --out $TMP/o"

expect_error "unknown command" "unknown command 'trian'" "$LOOM" trian
expect_error "unknown flag" "unknown flag '--bogus'" "$LOOM" train --data $DATA --bogus
expect_error "missing value" "--steps needs a value" "$LOOM" train --data $DATA --steps
expect_error "bad number" "--lr: 'abc' is not a number" "$LOOM" train --data $DATA --lr abc
expect_error "bad integer" "--batch: '2x' is not an integer" "$LOOM" train --data $DATA --batch 2x
expect_error "negative steps" "--steps: -3 is out of range" "$LOOM" train --data $DATA --steps -3
expect_error "bad shuffle" "--shuffle: 'maybe' must be on or off" "$LOOM" train --data $DATA --shuffle maybe
expect_error "unknown preset" "--model: unknown preset 'gpt5'" "$LOOM" train --data $DATA --model gpt5
expect_error "no data" "--data is required" "$LOOM" train
expect_error "heads do not divide" "--n-head: 5 heads do not divide --n-embd 384" "$LOOM" train --data $DATA --n-head 5
expect_error "total not multiple" "--total-batch-tokens: 1000 is not a multiple" \
  "$LOOM" train $T --data $DATA --total-batch-tokens 1000
expect_error "seq-len > block" "--seq-len: 512 exceeds the model's block size 256" \
  "$LOOM" train --model tiny --data $DATA --seq-len 512
expect_error "missing shard" "$TMP/nope.bin: cannot open" "$LOOM" train $T --data "$TMP/nope.bin"

head -c 1000 $DATA >"$TMP/trunc_hdr.bin"
expect_error "truncated header" "trunc_hdr.bin: truncated header" "$LOOM" train $T --data "$TMP/trunc_hdr.bin"
head -c 5000 $DATA >"$TMP/trunc.bin"
expect_error "truncated shard" "trunc.bin: truncated: header says 32768 tokens" "$LOOM" train $T --data "$TMP/trunc.bin"
{ printf '\x01\x02\x03\x04'; tail -c +5 $DATA; } >"$TMP/magic.bin"
expect_error "wrong magic" "magic.bin: bad magic 67305985" "$LOOM" train $T --data "$TMP/magic.bin"
: >"$TMP/empty.bin"
expect_error "empty shard" "empty.bin: empty file" "$LOOM" train $T --data "$TMP/empty.bin"
expect_error "token >= vocab" "is >= vocab size 1000" "$LOOM" train $T --vocab-size 1000 --data $DATA
printf '\x00\x00' >"$TMP/tiny.u16"
expect_error "too little data" "fewer than one window" "$LOOM" train $T --data "$TMP/tiny.u16"

printf 'garbage that is not safetensors' >"$TMP/bad.safetensors"
expect_error "malformed safetensors" "bad.safetensors" "$LOOM" train $T --data $DATA --init-from "$TMP/bad.safetensors"
expect_error "missing model" "$TMP/none.safetensors" "$LOOM" eval --init-from "$TMP/none.safetensors" --data $DATA

expect_error "out of memory" "out of memory: training needs" \
  "$LOOM" train --model gpt2-xl --data $DATA --batch 65536 --seq-len 1024 --steps 1 --out "$TMP/o"
expect_error "unwritable out" "--out: cannot create directory /proc/loom" "$LOOM" train ${T% --out *} --data $DATA --out /proc/loom
expect_error "eval unknown flag" "unknown flag '--stepz'" "$LOOM" eval --data $DATA --stepz 3
expect_error "export needs out" "--out is required" "$LOOM" export

for c in train eval export info; do
  check "$c --help" "$LOOM" $c --help >/dev/null
done
finish cli_errors
