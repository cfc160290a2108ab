#!/usr/bin/env bash
# GPT-2 is unchanged by the model-layer redesign: with the reference backend (plain
# loops in a fixed order, so the bits do not depend on the CPU), the losses, gradient
# norms, validation losses and final weights of a short run are byte for byte those of
# the fixture that the binary before the redesign made (commits 347c515 and c5721a6 both
# give it, on an AMD EPYC with AVX-512; glibc's libm could differ in a last bit on other
# CPUs). Regenerate only with a binary from before the redesign, or when a change is meant
# to alter the arithmetic: tests/cli/gpt2_bitwise.sh --regen.
source "$(dirname "$0")/lib.sh"
FX=tests/fixtures/gpt2_bitwise
# a byte-level corpus (vocab 256) keeps the model, and the fixture, small
head -c 60000 data/tinyshakespeare.txt | od -An -v -tu1 -w1 | tr -d ' ' |
  /usr/bin/python3 -c "import sys, array; array.array('H', map(int, sys.stdin)).tofile(open(sys.argv[1], 'wb'))" "$TMP/bytes.u16"
"$LOOM" train --model tiny --vocab-size 256 --n-layer 2 --n-embd 32 --n-head 4 --block-size 32 --backend ref \
  --data "$TMP/bytes.u16" --val-data "$TMP/bytes.u16" --batch 2 --seq-len 32 --total-batch-tokens 128 --steps 6 \
  --warmup 2 --lr 3e-3 --clip 0.5 --eval-every 3 --val-batches 2 --threads 2 --peak-gflops 400 --quiet --out "$TMP/run"
# the arithmetic of every step, without the timings
numbers() { sed -E 's/"ms": [^,]*, "tokens_per_s": [^,]*, "mfu": [^,]*, //' "$1"; }
if [ "${1:-}" = --regen ]; then
  numbers "$TMP/run/metrics.jsonl" >"$FX/metrics.jsonl"
  cp "$TMP/run/model.safetensors" "$FX/model.safetensors"
  echo "regenerated $FX"
  exit 0
fi
check "losses, grad norms and val losses bitwise the fixture's" cmp -s <(numbers "$TMP/run/metrics.jsonl") "$FX/metrics.jsonl"
check "final weights byte for byte the fixture's" cmp -s "$TMP/run/model.safetensors" "$FX/model.safetensors"
finish gpt2_bitwise
