#!/usr/bin/env bash
# Bitwise resume: 2N steps straight vs N steps, stop, resume, N more (shuffling, warmup,
# cosine, clipping and accumulation on): identical losses at every step, identical
# final weights and optimizer state (the final checkpoints are byte-identical). Also a
# SIGTERM mid-run (exit 3 after a checkpoint) and refusals of mismatched flags.
source "$(dirname "$0")/lib.sh"
# M0 without --steps, --lr and --n-layer, which some cases change (a flag given twice is refused)
M0="--model tiny --n-embd 64 --n-head 4 --block-size 64 --data data/tinyshakespeare_train.bin
   --batch 2 --seq-len 32 --total-batch-tokens 128 --warmup 4 --min-lr 1e-4 --clip 0.5
   --shuffle on --seed 11 --threads 2 --peak-gflops 400 --quiet"
M="$M0 --n-layer 2 --lr 3e-3 --steps 16"
losses() { sed -E 's/.*"step": ([0-9]+), "loss": ([^,]*), "lr": ([^,]*), "grad_norm": ([^,]*),.*/\1 \2 \3 \4/' "$1"; }

"$LOOM" train $M --out "$TMP/a" --ckpt-dir "$TMP/a/ck" --ckpt-every 4 --keep 2
check "straight run" test -s "$TMP/a/ck/step_00000016.safetensors"
check "keep 2 pruned older checkpoints" test "$(ls "$TMP/a/ck" | grep -c '^step_')" -eq 2
check "latest names the newest" grep -qx "step_00000016.safetensors" "$TMP/a/ck/latest"

"$LOOM" train $M --out "$TMP/b" --ckpt-dir "$TMP/b/ck" --ckpt-every 4 --stop-at 8
check "--stop-at 8 leaves step 8" grep -qx "step_00000008.safetensors" "$TMP/b/ck/latest"
"$LOOM" train $M --out "$TMP/b" --ckpt-dir "$TMP/b/ck" --ckpt-every 4 --resume
check "resumed losses, lrs and norms are bitwise the straight run's" cmp -s <(losses "$TMP/a/metrics.jsonl") <(losses "$TMP/b/metrics.jsonl")
check "16 steps logged after resume" test "$(wc -l <"$TMP/b/metrics.jsonl")" -eq 16
check "final checkpoint (weights + Adam m, v) byte-identical" \
  cmp -s "$TMP/a/ck/step_00000016.safetensors" "$TMP/b/ck/step_00000016.safetensors"
check "final model byte-identical" cmp -s "$TMP/a/model.safetensors" "$TMP/b/model.safetensors"

# resume from an explicit file, into a fresh directory
"$LOOM" train $M --out "$TMP/c" --ckpt-dir "$TMP/c/ck" --resume "$TMP/b/ck/step_00000008.safetensors"
check "--resume FILE continues bitwise" cmp -s "$TMP/a/ck/step_00000016.safetensors" "$TMP/c/ck/step_00000016.safetensors"

# SIGTERM: finish the step, checkpoint, exit 3; then resume to the same end
"$LOOM" train $M --out "$TMP/d" --ckpt-dir "$TMP/d/ck" >/dev/null 2>"$TMP/d.err" &
pid=$!
for _ in $(seq 100); do [ -s "$TMP/d/metrics.jsonl" ] && break; sleep 0.05; done
kill -TERM $pid
wait $pid
rc=$?
check "SIGTERM exits 3 (got $rc)" test $rc -eq 3
check "SIGTERM message" grep -q "stopped after step .* with a checkpoint" "$TMP/d.err"
if [ $rc -eq 3 ]; then
  "$LOOM" train $M --out "$TMP/d" --ckpt-dir "$TMP/d/ck" --resume
  check "resume after SIGTERM is bitwise" cmp -s "$TMP/a/ck/step_00000016.safetensors" "$TMP/d/ck/step_00000016.safetensors"
fi

# a second SIGINT during a save exits at once (130); the save is never committed half
"$LOOM" train $M0 --n-layer 2 --lr 3e-3 --steps 400 --out "$TMP/i" --ckpt-dir "$TMP/i/ck" --stop-at 4
cp "$TMP/i/ck/step_00000004.safetensors" "$TMP/i4"
LOOM_TEST_CKPT_PAUSE_MS=5000 "$LOOM" train $M0 --n-layer 2 --lr 3e-3 --steps 400 --out "$TMP/i" --ckpt-dir "$TMP/i/ck" --resume \
  >/dev/null 2>"$TMP/i.err" &
pid=$!
for _ in $(seq 200); do [ "$(wc -l <"$TMP/i/metrics.jsonl")" -ge 7 ] && break; sleep 0.05; done
kill -INT $pid
for _ in $(seq 100); do ls -a "$TMP/i/ck" | grep -q '\.tmp$' && break; sleep 0.05; done
kill -INT $pid
wait $pid
rc=$?
check "second SIGINT exits 130 (got $rc)" test $rc -eq 130
check "second SIGINT says so" grep -q "second interrupt" "$TMP/i.err"
check "after a second SIGINT, latest still names step 4" grep -qx "step_00000004.safetensors" "$TMP/i/ck/latest"
check "after a second SIGINT, step 4 is intact" cmp -s "$TMP/i4" "$TMP/i/ck/step_00000004.safetensors"
check "after a second SIGINT, only step 4 is committed" test "$(ls "$TMP/i/ck" | grep -c '^step_')" -eq 1
"$LOOM" train $M0 --n-layer 2 --lr 3e-3 --steps 400 --out "$TMP/i" --ckpt-dir "$TMP/i/ck" --resume --stop-at 6
check "the next save cleans the killed save's temporary file" test -z "$(ls -a "$TMP/i/ck" | grep '\.tmp$')"

# mismatches are refused, naming the fields
expect_error "mismatched flags" "steps 16 (checkpoint) vs 20 (flags), lr 0.00300000003 (checkpoint) vs 0.00200000009 (flags)" \
  "$LOOM" train $M0 --n-layer 2 --lr 2e-3 --steps 20 --out "$TMP/e" --resume "$TMP/b/ck/step_00000008.safetensors"
expect_error "mismatched model" "n_layer 2 (checkpoint) vs 3 (flags)" \
  "$LOOM" train $M0 --n-layer 3 --lr 3e-3 --steps 16 --out "$TMP/e" --resume "$TMP/b/ck/step_00000008.safetensors"
expect_error "resume without a place" "--resume: needs --ckpt-dir" "$LOOM" train $M --out "$TMP/e" --resume
expect_error "resume and init-from" "--resume and --init-from" \
  "$LOOM" train $M --out "$TMP/e" --resume "$TMP/b/ck/step_00000008.safetensors" --init-from "$TMP/a/model.safetensors"
expect_error "empty checkpoint dir" "no intact checkpoint in $TMP/empty" \
  "$LOOM" train $M --out "$TMP/e" --ckpt-dir "$TMP/empty" --resume

# Llama resumes bitwise as well, and a kill -9 in the middle of a run leaves a checkpoint
# from which the run ends where the uninterrupted one does
LM="--model llama-tiny --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --ffn-dim 96 --block-size 64
    --data data/tinyshakespeare_train.bin --batch 2 --seq-len 32 --total-batch-tokens 128 --steps 12 --warmup 3
    --lr 3e-3 --clip 0.5 --seed 11 --threads 2 --peak-gflops 400 --quiet"
"$LOOM" train $LM --out "$TMP/la" --ckpt-dir "$TMP/la/ck"
"$LOOM" train $LM --out "$TMP/lb" --ckpt-dir "$TMP/lb/ck" --stop-at 5
"$LOOM" train $LM --out "$TMP/lb" --ckpt-dir "$TMP/lb/ck" --resume
check "Llama: 5 + resume + 7 steps give the straight run's final checkpoint" \
  cmp -s "$TMP/la/ck/step_00000012.safetensors" "$TMP/lb/ck/step_00000012.safetensors"
check "Llama: losses bitwise after the resume" cmp -s <(losses "$TMP/la/metrics.jsonl") <(losses "$TMP/lb/metrics.jsonl")
"$LOOM" train ${LM/--steps 12/--steps 100000} --out "$TMP/lk" --ckpt-dir "$TMP/lk/ck" --ckpt-every 1 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$TMP/lk/ck/latest" ] && break; sleep 0.05; done
sleep 0.3
kill -KILL $pid
wait $pid 2>/dev/null
"$LOOM" train ${LM/--steps 12/--steps 100000} --out "$TMP/lk" --ckpt-dir "$TMP/lk/ck" --resume --stop-at 300 >/dev/null 2>&1
"$LOOM" train ${LM/--steps 12/--steps 100000} --out "$TMP/lk2" --ckpt-dir "$TMP/lk2/ck" --stop-at 300 >/dev/null 2>&1
check "Llama: kill -9, resume: the step-300 checkpoint is the uninterrupted run's" \
  cmp -s "$TMP/lk/ck/step_00000300.safetensors" "$TMP/lk2/ck/step_00000300.safetensors"

# a checkpoint is also a model for export and eval
"$LOOM" export --init-from "$TMP/a/ck/step_00000016.safetensors" --out "$TMP/x" >/dev/null
check "export from a checkpoint equals the trainer's model" cmp -s "$TMP/x/model.safetensors" "$TMP/a/model.safetensors"
finish resume
