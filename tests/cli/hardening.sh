#!/usr/bin/env bash
# Promises kept against a hostile user: no checkpoint of non-finite weights is ever
# committed, and no model of them is evaluated or sampled; a checkpoint directory
# belongs to one run at a time (a lock naming the holder; per-process temporary names)
# and a fresh run never destroys another's checkpoints; a resumed run checks its data
# and threads; the memory check counts every buffer; bad flag values exit 2, a flag
# given twice and sloppy numbers are refused; signals in the first milliseconds and
# without --ckpt-dir; --init-from against shape flags; a diverging run is warned about.
source "$(dirname "$0")/lib.sh"
D=data/tinyshakespeare_val.bin
# M0 without --steps, --threads and --seed, which cases set themselves
M0="--model tiny --n-layer 1 --n-embd 32 --n-head 2 --block-size 32 --batch 2 --seq-len 16 --warmup 2
    --peak-gflops 400 --quiet"
M="$M0 --threads 1 --seed 5"
E="--data $D --batch 2 --seq-len 16"

# --- non-finite values are never committed, evaluated or sampled
expect_error "--eps 0 is refused" "--eps: 0 is out of range" "$LOOM" train $M --data $D --steps 2 --eps 0 --out "$TMP/e0"
"$LOOM" train $M --data $D --steps 2 --eps 0 --out "$TMP/e0" 2>/dev/null
check "--eps 0: exit 2 (a bad command line)" test $? -eq 2
LOOM_TEST_POISON_STEP=3 "$LOOM" train $M --data $D --steps 6 --ckpt-dir "$TMP/nan" --ckpt-every 1 --keep 1 \
  --out "$TMP/nan" 2>"$TMP/nan.err"
rc=$?
check "a NaN weight after step 3: exit 1 (got $rc)" test $rc -eq 1
check "a NaN weight: one line naming the tensor and the step" \
  test "$(wc -l <"$TMP/nan.err")" -eq 1 -a "$(grep -c "step 3: the AdamW update made tensor 'wpe.weight' non-finite" "$TMP/nan.err")" -eq 1
check "a NaN weight: latest still names step 2" grep -qx "step_00000002.safetensors" "$TMP/nan/latest"
check "a NaN weight: --keep 1 kept the good step 2, and no step 3 was written" \
  test -f "$TMP/nan/step_00000002.safetensors" -a ! -e "$TMP/nan/step_00000003.safetensors"
"$LOOM" eval --init-from "$TMP/nan/step_00000002.safetensors" $E --max-batches 2 >/dev/null
check "the last committed checkpoint evaluates" test $? -eq 0
# a model file whose weights hold a NaN (a trained model, one float of ln_f.weight patched)
"$LOOM" train $M --data $D --steps 2 --out "$TMP/ok" >/dev/null
cp "$TMP/ok/model.safetensors" "$TMP/nanmodel.safetensors"
/usr/bin/python3 - "$TMP/nanmodel.safetensors" <<'EOF'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
off = 8 + n + h['ln_f.weight']['data_offsets'][0] + 4 * 3
b[off:off + 4] = struct.pack('<I', 0x7fc00000)
open(p, 'wb').write(b)
EOF
expect_error "eval refuses non-finite weights" "tensor 'ln_f.weight' holds a non-finite value" \
  "$LOOM" eval --init-from "$TMP/nanmodel.safetensors" $E
expect_error "sample refuses non-finite weights" "tensor 'ln_f.weight' holds a non-finite value" \
  "$LOOM" sample --init-from "$TMP/nanmodel.safetensors" --max-tokens 4 --prompt hi
"$LOOM" train --data $D --steps 1 --batch 2 --seq-len 16 --threads 1 --quiet --init-from "$TMP/nanmodel.safetensors" \
  --out "$TMP/x" 2>"$TMP/x.err"
check "train --init-from a NaN model: exit 1, naming the tensor" grep -q "ln_f.weight' holds a non-finite" "$TMP/x.err"

# --- a diverging run is warned about, once
"$LOOM" train $M --data $D --steps 12 --lr 5 --clip 0 --out "$TMP/div" 2>"$TMP/div.err"
check "divergence: one warning naming ln(vocab)" test "$(grep -c "has stayed above ln(vocab)" "$TMP/div.err")" -eq 1

# --- one run per checkpoint directory
"$LOOM" train $M --data $D --steps 10 --ckpt-every 5 --ckpt-dir "$TMP/ckA" --out "$TMP/A"
cp -r "$TMP/ckA" "$TMP/ckA.copy"
expect_error "a fresh run in a used --ckpt-dir is refused" "holds 2 checkpoint(s) of an earlier run (newest: step 10)" \
  "$LOOM" train $M0 --threads 1 --seed 6 --data $D --steps 10 --ckpt-every 5 --ckpt-dir "$TMP/ckA" --out "$TMP/B"
check "the refused run left the old run's checkpoints as they were" diff -r -x .lock "$TMP/ckA" "$TMP/ckA.copy"
"$LOOM" train $M --data $D --steps 4 --ckpt-dir "$TMP/ckA" --out "$TMP/B" --overwrite
check "--overwrite: only the new run's checkpoint remains" test "$(ls "$TMP/ckA")" = "$(printf 'latest\nstep_00000004.safetensors')"
# two trainers on one directory, again and again: the second is refused naming the
# first (host and pid), and every committed checkpoint passes its CRC
refused=0 crc_ok=1
for i in 1 2 3 4 5; do
  d="$TMP/race$i"
  "$LOOM" train $M --data $D --steps 400 --ckpt-every 2 --keep 2 --ckpt-dir "$d" --out "$d.a" >/dev/null 2>&1 &
  a=$!
  for _ in $(seq 200); do grep -q "pid $a" "$d/.lock" 2>/dev/null && break; sleep 0.02; done
  "$LOOM" train $M --data $D --steps 400 --ckpt-every 2 --keep 2 --ckpt-dir "$d" --out "$d.b" --resume \
    >/dev/null 2>"$d.err"
  rb=$?
  [ $rb -eq 1 ] && grep -q "is in use by another run (host $(hostname), pid $a)" "$d.err" && refused=$((refused + 1))
  kill -TERM $a 2>/dev/null
  wait $a
  for f in "$d"/step_*.safetensors; do
    "$LOOM" eval --init-from "$f" $E --max-batches 1 >/dev/null 2>&1 || crc_ok=0
  done
done
check "the second trainer on a directory is refused, naming the holder (5 of 5: $refused)" test $refused -eq 5
check "every committed checkpoint of the races passes its CRC" test $crc_ok -eq 1
# both started at the same instant: exactly one runs
for i in 1 2 3; do
  d="$TMP/same$i"
  "$LOOM" train $M --data $D --steps 30 --ckpt-every 3 --ckpt-dir "$d" --out "$d.a" --overwrite >/dev/null 2>"$d.a.err" &
  a=$!
  "$LOOM" train $M --data $D --steps 30 --ckpt-every 3 --ckpt-dir "$d" --out "$d.b" --overwrite >/dev/null 2>"$d.b.err" &
  b=$!
  wait $a; ra=$?
  wait $b; rb=$?
  check "same instant $i: one exits 0 and one is refused ($ra, $rb)" \
    test $((ra + rb)) -eq 1 -a "$(cat "$d.a.err" "$d.b.err" | grep -c 'is in use by another run')" -eq 1
  "$LOOM" eval --init-from "$d/step_00000030.safetensors" $E --max-batches 1 >/dev/null 2>&1
  check "same instant $i: the winner's final checkpoint passes its CRC" test $? -eq 0
done

# one --out at a time as well (metrics, model and config would interleave)
"$LOOM" train $M --data $D --steps 100000 --out "$TMP/oneout" >/dev/null 2>&1 &
a=$!
for _ in $(seq 200); do grep -q "pid $a" "$TMP/oneout/.lock" 2>/dev/null && break; sleep 0.02; done
expect_error "a second run on one --out is refused" "--out: $TMP/oneout is in use by another run (host $(hostname), pid $a)" \
  "$LOOM" train $M --data $D --steps 2 --out "$TMP/oneout"
kill -TERM $a
wait $a
# a resume from an older checkpoint than the metrics' last line logs no step twice
"$LOOM" train $M --data $D --steps 8 --ckpt-every 4 --ckpt-dir "$TMP/mk" --out "$TMP/mo"
"$LOOM" train $M --data $D --steps 8 --out "$TMP/mo" --resume "$TMP/mk/step_00000004.safetensors"
check "metrics after a resume from step 4 of 8: steps 1..8, once each" \
  test "$(sed -E 's/^\{"step": ([0-9]+),.*/\1/' "$TMP/mo/metrics.jsonl" | tr '\n' ' ')" = "1 2 3 4 5 6 7 8 "

# --- a resumed run checks its data and threads
cp data/tinyshakespeare_train.bin "$TMP/train.bin"
"$LOOM" train $M --data "$TMP/train.bin" --steps 8 --stop-at 4 --ckpt-dir "$TMP/ckD" --out "$TMP/D"
/usr/bin/python3 - "$TMP/train.bin" "$TMP/short.bin" <<'EOF'
import struct, sys
b = open(sys.argv[1], 'rb').read()
h = bytearray(b[:1024])
h[8:12] = struct.pack('<i', 100)
open(sys.argv[2], 'wb').write(bytes(h) + b[1024:1024 + 200])
EOF
cp "$TMP/train.bin" "$TMP/train.orig"
cp "$TMP/short.bin" "$TMP/train.bin"
expect_error "resume on replaced data is refused" "the training data are not the checkpoint's: file 1 (train.bin) holds 100 tokens now" \
  "$LOOM" train $M --data "$TMP/train.bin" --steps 8 --ckpt-dir "$TMP/ckD" --out "$TMP/D" --resume
"$LOOM" train $M --data "$TMP/train.bin" --steps 8 --ckpt-dir "$TMP/ckD" --out "$TMP/D2" --resume \
  --allow-change data 2>"$TMP/allow.err" >/dev/null
check "--allow-change data continues, with a warning" test $? -eq 0 -a "$(grep -c 'continuing on changed data' "$TMP/allow.err")" -eq 1
cp "$TMP/train.orig" "$TMP/train.bin"
"$LOOM" train $M --data "$TMP/train.bin" --steps 8 --stop-at 4 --ckpt-dir "$TMP/ckT" --out "$TMP/T"
expect_error "resume with other threads is refused" "was made with 1 thread(s) per rank, this run has 2" \
  "$LOOM" train $M0 --seed 5 --threads 2 --data "$TMP/train.bin" --steps 8 --ckpt-dir "$TMP/ckT" --out "$TMP/T" --resume
"$LOOM" train $M0 --seed 5 --threads 2 --data "$TMP/train.bin" --steps 8 --ckpt-dir "$TMP/ckT" --out "$TMP/T" --resume \
  --allow-change threads >/dev/null
check "--allow-change threads continues" test $? -eq 0
expect_error "bad --allow-change" "--allow-change: 'seed' is not data or threads" \
  "$LOOM" train $M --data $D --allow-change seed

# --- the memory check counts the AdamW moments (and every other buffer)
start=$(date +%s)
expect_error "training memory counts AdamW" "out of memory: training needs" \
  "$LOOM" train --model tiny --vocab-size 16777216 --batch 2 --seq-len 32 --data $D --threads 1 --out "$TMP/mem"
check "the memory check answers before allocating ($(($(date +%s) - start)) s)" test $(($(date +%s) - start)) -le 10
grep -q "AdamW m+v 16.00" "$TMP/err"
check "the memory message lists AdamW m+v" test $? -eq 0

# --- the command line
"$LOOM" train $M --data $D --lr abc 2>/dev/null
check "a bad flag value exits 2" test $? -eq 2
expect_error "a flag given twice" "--lr is given more than once" "$LOOM" train $M --data $D --lr 1e-3 --lr 2e-3
expect_error "a blank before a number" "--steps: ' 5' is not an integer" "$LOOM" train $M --data $D --steps " 5"
expect_error "a plus sign" "--steps: '+5' is not an integer" "$LOOM" train $M --data $D --steps +5
expect_error "a hex float" "--lr: '0x1p-3' is not a number" "$LOOM" train $M --data $D --lr 0x1p-3
expect_error "--init-from with --n-layer" "--n-layer: the model's shape comes from --init-from" \
  "$LOOM" train --data $D --steps 1 --init-from "$TMP/ok/model.safetensors" --n-layer 4
expect_error "--init-from with --vocab-size" "--vocab-size: the model's shape comes from --init-from" \
  "$LOOM" eval $E --init-from "$TMP/ok/model.safetensors" --vocab-size 1000
"$LOOM" eval $E --init-from "$TMP/ok/model.safetensors" --vocab-size 1000 >/dev/null 2>&1
check "eval refuses a shape flag with --init-from with exit 2, as train does" test $? -eq 2
"$LOOM" sample --init-from "$TMP/ok/model.safetensors" --n-layer 4 --max-tokens 1 >/dev/null 2>&1
check "sample too" test $? -eq 2
expect_error "--init-from with another --n-head" "--n-head: the model's shape comes from --init-from" \
  "$LOOM" train --data $D --steps 1 --init-from "$TMP/ok/model.safetensors" --n-head 4
{ head -c 8 $D; printf '\xff\xff\xff\xff'; tail -c +13 $D; } >"$TMP/negcount.bin"
expect_error "a negative token count in a shard" "negcount.bin: the header's token count is -1 (it must be positive)" \
  "$LOOM" train $M --data "$TMP/negcount.bin" --steps 1 --out "$TMP/x"
/usr/bin/python3 -c "
import struct
b = bytearray(open('$D', 'rb').read()); b[8:12] = struct.pack('<i', 10)
open('$TMP/smallcount.bin', 'wb').write(b)"
expect_error "a too small token count in a shard" "smallcount.bin: the header says 10 tokens, but the file holds" \
  "$LOOM" train $M --data "$TMP/smallcount.bin" --steps 1 --out "$TMP/x"

# --- signals: blocked from the first instant of loom's own code (before that, only the
# fork and the dynamic loader's fraction of a millisecond remain)
for d in 0.02 0.05 0.2; do
  "$LOOM" train $M --data $D --steps 100000 --out "$TMP/sig" >/dev/null 2>&1 &
  p=$!
  sleep $d
  kill -TERM $p
  wait $p
  rc=$?
  check "SIGTERM after ${d} s: a clean stop after the first step (exit 3, got $rc)" test $rc -eq 3
done
"$LOOM" train $M --data $D --steps 100000 --out "$TMP/nock" >/dev/null 2>"$TMP/nock.err" &
p=$!
for _ in $(seq 200); do [ -s "$TMP/nock/metrics.jsonl" ] && break; sleep 0.02; done
kill -TERM $p
wait $p
rc=$?
check "SIGTERM without --ckpt-dir: exit 3 (got $rc)" test $rc -eq 3
check "SIGTERM without --ckpt-dir: the model is saved and says so" \
  test -s "$TMP/nock/model.safetensors" -a "$(grep -c 'saving the model to --out' "$TMP/nock.err")" -eq 1
"$LOOM" eval --init-from "$TMP/nock/model.safetensors" $E --max-batches 1 >/dev/null
check "SIGTERM without --ckpt-dir: the saved model evaluates" test $? -eq 0
finish hardening
