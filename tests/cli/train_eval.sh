#!/usr/bin/env bash
# Train a small model on the bundled data and check that it learns; `loom eval` on the
# saved model reproduces the trainer's final validation loss exactly (same windows in
# order, same batches); export round-trips the weights.
source "$(dirname "$0")/lib.sh"
M="--model tiny --n-layer 2 --n-embd 64 --n-head 4 --block-size 64"
"$LOOM" train $M --data data/tinyshakespeare_train.bin --val-data data/tinyshakespeare_val.bin \
  --batch 4 --seq-len 64 --steps 60 --lr 3e-3 --warmup 5 --eval-every 30 --val-batches 10 \
  --out "$TMP/run" >"$TMP/train.log"
check "train exit 0" test $? -eq 0
first=$(sed -n '1s/.*"loss": \([^,]*\),.*/\1/p' "$TMP/run/metrics.jsonl")
val=$(sed -n '$s/.*"val_loss": \([^}]*\)}.*/\1/p' "$TMP/run/metrics.jsonl")
echo "first train loss $first, final val loss $val"
check "initial loss near ln(50257)=10.82" awk -v l="$first" 'BEGIN{exit !(l > 10.5 && l < 11.2)}'
check "val loss fell below 7.5" awk -v l="$val" 'BEGIN{exit !(l < 7.5)}'
check "progress line has MFU and ETA" grep -q "MFU .* ETA" "$TMP/train.log"
check "metrics fields" grep -q '"tokens_per_s"' "$TMP/run/metrics.jsonl"
ev=$("$LOOM" eval --init-from "$TMP/run/model.safetensors" --data data/tinyshakespeare_val.bin \
  --batch 4 --seq-len 64 --max-batches 10 --json)
evl=$(echo "$ev" | sed 's/.*"loss": \([^,]*\),.*/\1/')
echo "eval: $ev"
check "eval reproduces the final val loss bitwise ($evl vs $val)" test "$evl" = "$val"
"$LOOM" export --init-from "$TMP/run/model.safetensors" --out "$TMP/exp" >/dev/null
check "export wrote config.json" grep -q '"n_head": 4' "$TMP/exp/config.json"
check "export round-trips the weights" cmp -s "$TMP/run/model.safetensors" "$TMP/exp/model.safetensors"
last=$("$LOOM" eval --init-from "$TMP/exp/model.safetensors" --data data/tinyshakespeare_val.bin \
  --batch 4 --seq-len 64 --max-batches 10 | tail -n 1)
check "eval's last line is 'loss <value>'" grep -qE '^loss [0-9.]+$' <<<"$last"
finish train_eval
