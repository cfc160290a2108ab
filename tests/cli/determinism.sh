#!/usr/bin/env bash
# Same seed, same flags: bitwise-identical losses and final weights across two runs
# (shuffling, gradient accumulation, warmup, cosine and clipping on). A different seed
# must change them, so the comparison can fail.
source "$(dirname "$0")/lib.sh"
run() { # run DIR SEED
  "$LOOM" train --model tiny --n-layer 2 --n-embd 64 --n-head 4 --block-size 64 \
    --data data/tinyshakespeare_train.bin --batch 2 --seq-len 32 --total-batch-tokens 128 \
    --steps 8 --warmup 3 --lr 3e-3 --clip 0.5 --shuffle on --seed "$2" --threads 2 --quiet --out "$1"
}
losses() { sed -E 's/.*"loss": ([^,]*),.*"grad_norm": ([^,]*),.*/\1 \2/' "$1/metrics.jsonl"; }
run "$TMP/a" 7 && run "$TMP/b" 7 && run "$TMP/c" 8
check "run a finished" test -s "$TMP/a/model.safetensors"
check "8 steps logged" test "$(wc -l <"$TMP/a/metrics.jsonl")" -eq 8
check "same losses and norms, same seed" cmp -s <(losses "$TMP/a") <(losses "$TMP/b")
check "same weights, same seed" cmp -s "$TMP/a/model.safetensors" "$TMP/b/model.safetensors"
check "different losses, different seed" not cmp -s <(losses "$TMP/a") <(losses "$TMP/c")
check "different weights, different seed" not cmp -s "$TMP/a/model.safetensors" "$TMP/c/model.safetensors"
finish determinism
