#!/usr/bin/env bash
# The README's main job: train the `small` GPT-2 (6 layers, 384 channels, 6 heads) on
# the bundled tinyshakespeare tokens, with validation, then evaluate the saved model.
set -euo pipefail
LOOM=${1:-build/loom}
OUT=${OUT:-out/demo}
"$LOOM" info
"$LOOM" train --model small --data data/tinyshakespeare_train.bin --val-data data/tinyshakespeare_val.bin \
  --batch 8 --seq-len 256 --steps ${STEPS:-80} --lr 1e-3 --warmup 10 --eval-every 20 --val-batches 8 \
  --out "$OUT"
"$LOOM" eval --init-from "$OUT/model.safetensors" --data data/tinyshakespeare_val.bin --batch 8 --seq-len 256
echo
echo "--- a sample from the trained model ---"
"$LOOM" sample --init-from "$OUT/model.safetensors" --prompt "ROMEO:" --max-tokens 120 --seed 7
