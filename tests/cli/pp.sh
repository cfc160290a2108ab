#!/usr/bin/env bash
# Pipeline parallelism (Open MPI or MPICH, oversubscribed on 2 cores), GPT-2 (tied LM head)
# and Llama (tied and untied): pp 2 and 4 with each schedule, uneven --pp-layers, dp 2 with
# ZeRO 1 and 2, and 8 ranks as dp 2 x tp 2 x pp 2 (with and without --sp): the losses, grad
# norms, validation losses, the model and the checkpoint (weights and AdamW m and v) are
# bitwise those of pp 1 at the same tp; fewer micro-batches than stages run; a checkpoint
# resumes across layouts bitwise (pp 4 -> pp 2 x dp 2 -> one process); bad layouts are
# refused with the reason; a killed stage ends the job, and a stopped one is named by the
# watchdog of the stage waiting for it (stage, micro-batch, peer).
# Skipped (77) when this loom was built without MPI or mpirun is missing.
source "$(dirname "$0")/lib.sh"
mpi_setup
COMMON="--data data/tinyshakespeare_train.bin --val-data data/tinyshakespeare_val.bin --eval-every 4 --val-batches 2
   --batch 2 --seq-len 32 --warmup 2 --lr 3e-3 --clip 0.5 --shuffle on --threads 1 --peak-gflops 200 --quiet"
GPT1="--model tiny --n-layer 4 --n-embd 64 --n-head 4 --block-size 64 $COMMON" # one micro-batch per step
GPT="$GPT1 --total-batch-tokens 512"                                            # eight
LLAMA="--model llama-tiny --n-layer 4 --n-embd 64 --n-head 4 --n-kv-head 2 --ffn-dim 96 --block-size 64 $COMMON
   --total-batch-tokens 512"
STEPS=8
# the arithmetic of every step, without the timings
numbers() { sed -E 's/"ms": [^,]*, "tokens_per_s": [^,]*, "mfu": [^,]*, //' "$1"; }
run() { # run NP OUT FLAGS...: one mpirun, its exit status
  local np=$1 out=$2
  shift 2
  timeout 300 "${RUN[@]}" -np "$np" "$LOOM" train "$@" --out "$out" >"$out.log" 2>&1
}
same() { # same WHAT BASE RUN: metrics, model and checkpoint bitwise
  check "$1: losses, grad norms and val losses bitwise pp 1's" cmp -s <(numbers "$2/metrics.jsonl") <(numbers "$3/metrics.jsonl")
  check "$1: model bitwise pp 1's" cmp -s "$2/model.safetensors" "$3/model.safetensors"
  check "$1: checkpoint (weights, AdamW m and v) bitwise pp 1's" \
    cmp -s "$2/ck/step_0000000$STEPS.safetensors" "$3/ck/step_0000000$STEPS.safetensors"
}

# np:base:flags, base the pp 1 run it matches (one: a single process; tp2, tp2sp: tp 2 on 2 ranks)
GPT_LAYOUTS="2:one:--pp 2|2:one:--pp 2 --pp-schedule gpipe|4:one:--pp 4|4:one:--pp 4 --pp-schedule gpipe|
2:one:--pp 2 --pp-layers 1,3|4:one:--pp 2 --zero 1|4:one:--pp 2 --zero 2 --pp-schedule gpipe|
8:tp2:--tp 2 --pp 2 --zero 1|4:tp2sp:--tp 2 --sp --pp 2|8:tp2sp:--tp 2 --sp --pp 2 --zero 2"
LLAMA_LAYOUTS="2:one:--pp 2|4:one:--pp 4 --pp-schedule gpipe|4:one:--pp 2 --zero 2|8:tp2:--tp 2 --pp 2 --zero 1"
for arch in gpt llama llama_untied; do
  case $arch in
    gpt) A=$GPT L=$GPT_LAYOUTS ;;
    llama) A=$LLAMA L=$LLAMA_LAYOUTS ;;
    llama_untied) A="$LLAMA --tie off" L="2:one:--pp 2|4:one:--pp 4|8:tp2:--tp 2 --pp 2 --zero 2" ;;
  esac
  "$LOOM" train $A --steps $STEPS --out "$TMP/$arch.one" --ckpt-dir "$TMP/$arch.one/ck" >/dev/null
  check "$arch single process: exit 0" test $? -eq 0
  run 2 "$TMP/$arch.tp2" $A --steps $STEPS --tp 2 --ckpt-dir "$TMP/$arch.tp2/ck"
  check "$arch tp 2: exit 0" test $? -eq 0
  [ $arch = gpt ] && { run 2 "$TMP/$arch.tp2sp" $A --steps $STEPS --tp 2 --sp --ckpt-dir "$TMP/$arch.tp2sp/ck"
    check "$arch tp 2 --sp: exit 0" test $? -eq 0; }
  IFS='|' read -ra lays <<<"$(echo $L)"
  for lay in "${lays[@]}"; do
    IFS=: read -r np base flags <<<"$lay"
    np=${np// /}
    d="$TMP/$arch.$(echo "$np $flags" | tr -d ' ,-')"
    run "$np" "$d" $A --steps $STEPS $flags --ckpt-dir "$d/ck"
    rc=$?; check "$arch np $np $flags: exit 0 ($(tail -c 300 "$d.log"))" test $rc -eq 0
    same "$arch np $np $flags" "$TMP/$arch.$base" "$d"
  done
done

# the start-up report: the layout and the stages
"${RUN[@]}" -np 4 "$LOOM" train ${GPT/--quiet/} --steps 1 --pp 2 --out "$TMP/report" >"$TMP/report.out" 2>&1
check "start-up: the layout dp x tp x pp" grep -q "ranks: 4 (4 per node) = data-parallel 2 x tensor-parallel 1 x pipeline 2" \
  "$TMP/report.out"
check "start-up: the stages, their layers, the schedule and the bubble" \
  grep -q "pipeline: 2 stages, layers 0-2 (2 in flight) | 3-3 (1 in flight); schedule 1f1b, 4 micro-batches per step: bubble (p-1)/(m+p-1) = 20.0%" \
  "$TMP/report.out"

# fewer micro-batches than stages: one micro-batch through 4 stages, each schedule
"$LOOM" train $GPT1 --steps 3 --out "$TMP/m1.one" >/dev/null
for sched in 1f1b gpipe; do
  run 4 "$TMP/m1.$sched" $GPT1 --steps 3 --pp 4 --pp-schedule $sched
  check "1 micro-batch, pp 4 $sched: exit 0" test $? -eq 0
  check "1 micro-batch, pp 4 $sched: bitwise pp 1" \
    cmp -s <(numbers "$TMP/m1.one/metrics.jsonl") <(numbers "$TMP/m1.$sched/metrics.jsonl")
done

# resume across layouts: pp 4 stops at 3, pp 2 x dp 2 (ZeRO 1) goes on to 6, one process
# finishes: bitwise the uninterrupted single process
R="$TMP/resume"
run 4 "$R" $GPT --steps $STEPS --pp 4 --ckpt-dir "$R/ck" --stop-at 3
check "resume: pp 4 stopped at step 3 (exit 0)" test $? -eq 0
run 4 "$R" $GPT --steps $STEPS --pp 2 --zero 1 --ckpt-dir "$R/ck" --resume --stop-at 6
check "resume: pp 2 x dp 2 from pp 4's checkpoint (exit 0, $(tail -c 200 "$R.log"))" test $? -eq 0
"$LOOM" train $GPT --steps $STEPS --ckpt-dir "$R/ck" --resume --out "$R" >/dev/null
check "resume: one process from pp 2 x dp 2's checkpoint (exit 0)" test $? -eq 0
# (a run that stops early validates at its last step too: those val losses are extra)
nov() { numbers "$1" | sed -E 's/, "val_loss": [^}]*//'; }
check "resume pp 4 -> pp 2 x dp 2 -> pp 1: losses and grad norms bitwise pp 1's" cmp -s <(nov "$TMP/gpt.one/metrics.jsonl") \
  <(nov "$R/metrics.jsonl")
check "resume pp 4 -> pp 2 x dp 2 -> pp 1: model bitwise pp 1's" cmp -s "$TMP/gpt.one/model.safetensors" "$R/model.safetensors"
check "resume pp 4 -> pp 2 x dp 2 -> pp 1: checkpoint bitwise pp 1's" \
  cmp -s "$TMP/gpt.one/ck/step_0000000$STEPS.safetensors" "$R/ck/step_0000000$STEPS.safetensors"

# bad layouts: one line with the reason, on every rank alike
expect_mpi_error() { # expect_mpi_error WHAT NP MESSAGE FLAGS...
  local what=$1 np=$2 msg=$3
  shift 3
  timeout 60 "${RUN[@]}" -np "$np" "$LOOM" train $GPT --steps 1 "$@" --out "$TMP/bad" >"$TMP/bad.out" 2>&1
  local rc=$?
  check "$what: refused (exit $rc)" test $rc -ne 0 -a $rc -ne 124
  check "$what: one line: $msg ($(grep '^loom' "$TMP/bad.out" | head -2))" \
    test "$(grep -c "^loom train: error: .*$msg" "$TMP/bad.out")" -eq 1
}
expect_mpi_error "--pp 3 on 4 ranks" 4 "--tp 1 x --pp 3 = 3: does not divide the 4 ranks of the job" --pp 3
expect_mpi_error "--pp 8 on 4 layers" 8 "--pp 8: more stages than the model's 4 layers" --pp 8
expect_mpi_error "--pp-layers of the wrong sum" 2 "--pp-layers '1,2': 2 stage(s) of 3 layers in all" --pp 2 \
  --pp-layers 1,2
expect_mpi_error "--pp-layers not numbers" 2 "--pp-layers 'a,b': give 2 positive layer counts" --pp 2 --pp-layers a,b
expect_error "--pp-layers without --pp" "--pp-layers: needs --pp 2 or more" \
  "$LOOM" train $GPT --steps 1 --pp-layers 2,2 --out "$TMP/bad1"
expect_error "--pp 2 without MPI ranks" "--tp 1 x --pp 2 = 2: does not divide the 1 ranks of the job" \
  "$LOOM" train $GPT --steps 1 --pp 2 --out "$TMP/bad1"
expect_error "--pp-schedule unknown" "--pp-schedule: 'zb' must be gpipe or 1f1b" \
  "$LOOM" train $GPT --steps 1 --pp 2 --pp-schedule zb --out "$TMP/bad1"

# faults: a killed stage ends the job fast; a stopped one is named by the stage waiting for it
fault_kill "killed stage" $GPT --pp 2
fault_stop "stopped stage" $GPT --pp 2
# stage 0 waits for the last stage: a micro-batch's gradient from it, a send to reach it, or
# (between steps) a collective of all ranks
check "stopped stage: the watchdog names the stage, the micro-batch and the peer ($(head -c 300 "$TMP/stop.err"))" \
  grep -qE "^loom: rank 0: collective #[0-9]+, (pipeline stage 0 waits for .* (from|to reach) stage 1 \(world rank 1\)|.*\(all ranks\))" \
  "$TMP/stop.err"
finish pp
