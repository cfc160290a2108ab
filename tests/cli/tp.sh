#!/usr/bin/env bash
# Tensor parallelism (Open MPI or MPICH, oversubscribed on 2 cores), GPT-2 and Llama:
# tp 2 and 4 times dp 1 and 2, ZeRO 0/1/2, with and without sequence parallelism: losses within 1e-5 relative of the single
# process over 20 steps, and bitwise across dp sizes at the same tp (losses, model,
# checkpoint); checkpoints written by every rank hold the single process's tensors and
# resume on other layouts (tp 2 x dp 2 -> tp 2 x dp 1 bitwise, -> tp 1 x dp 2 within
# tolerance; tp 1 -> tp 4); bad layouts are refused with the reason; a killed tp rank
# ends the job, and a stopped one is named by the watchdog with its group.
# Skipped (77) when this loom was built without MPI or mpirun is missing.
source "$(dirname "$0")/lib.sh"
mpi_setup
COMMON="--data data/tinyshakespeare_train.bin --batch 2 --seq-len 32 --total-batch-tokens 256 --warmup 2 --lr 3e-3
   --clip 0.5 --shuffle on --threads 1 --peak-gflops 200 --quiet"
GPT="--model tiny --n-layer 2 --n-embd 64 --n-head 4 --block-size 64 $COMMON"
LLAMA="--model llama-tiny --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 4 --ffn-dim 96 --block-size 64 $COMMON"
losses() { sed -E 's/.*"step": ([0-9]+), "loss": ([^,]*), "lr": ([^,]*), "grad_norm": ([^,]*),.*/\1 \2 \3 \4/' "$1"; }
# the largest relative difference of the losses of two runs, step by step
drift() {
  paste <(losses "$1") <(losses "$2") | awk '{ d = $2 - $6; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2);
    if (r > m) m = r; n++ } END { if (n == 0) m = 1; printf "%.3g", m }'
}
within() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
run() { # run NP OUT FLAGS...: one mpirun, its exit status
  local np=$1 out=$2
  shift 2
  timeout 300 "${RUN[@]}" -np "$np" "$LOOM" train "$@" --out "$out" >"$out.log" 2>&1
}

for arch in gpt llama; do
  [ $arch = gpt ] && A=$GPT || A=$LLAMA
  "$LOOM" train $A --steps 20 --out "$TMP/$arch.single" >/dev/null
  check "$arch single process: exit 0" test $? -eq 0
  # np:tp:zero:sp: tp 2 and 4, dp 1 and 2, ZeRO 0/1/2, with and without sequence parallelism
  layouts="2:2:0:0 4:2:0:0 4:2:1:0 4:2:2:0 4:4:0:0 8:4:1:0 2:2:0:1 4:2:2:1 4:4:0:1 8:4:2:1"
  [ $arch = llama ] && layouts="2:2:0:0 4:2:0:0 4:2:2:0 4:4:0:0 2:2:0:1 4:2:1:1 4:4:0:1"
  for lay in $layouts; do
    IFS=: read -r np tp zero sp <<<"$lay"
    d="$TMP/$arch.np$np.tp$tp.z$zero.sp$sp"
    what="$arch np $np tp $tp zero $zero$([ $sp = 1 ] && echo " --sp")"
    run $np "$d" $A --steps 20 --tp $tp --zero $zero $([ $sp = 1 ] && echo --sp) --ckpt-dir "$d/ck"
    rc=$?; check "$what: exit 0 ($(tail -c 300 "$d.log"))" test $rc -eq 0
    m=$(drift "$TMP/$arch.single/metrics.jsonl" "$d/metrics.jsonl")
    check "$what: losses within 1e-5 relative of the single process (worst $m)" within "$m" 1e-5
    base="$TMP/$arch.np$tp.tp$tp.z0.sp$sp" # the same tp on dp 1
    if [ "$np" != "$tp" ]; then
      check "$what: losses bitwise those of dp 1 at tp $tp" cmp -s <(losses "$base/metrics.jsonl") <(losses "$d/metrics.jsonl")
      check "$what: model bitwise that of dp 1" cmp -s "$base/model.safetensors" "$d/model.safetensors"
      check "$what: checkpoint bitwise that of dp 1" \
        cmp -s "$base/ck/step_00000020.safetensors" "$d/ck/step_00000020.safetensors"
    fi
  done
  # the file every rank wrote is the single process's file: the same header (names,
  # shapes, offsets), the tensors within the drift
  d="$TMP/$arch.np2.tp2.z0.sp0"
  check "$arch tp 2: model.safetensors the single process's size" \
    test "$(stat -c %s "$d/model.safetensors")" -eq "$(stat -c %s "$TMP/$arch.single/model.safetensors")"
done

# resume across layouts (GPT-2): tp 2 x dp 2 stops at 10, then
# -> tp 2 x dp 1: bitwise the uninterrupted tp 2 run; -> tp 1 x dp 2: within tolerance
d="$TMP/rs"
run 4 "$d" $GPT --steps 20 --tp 2 --zero 1 --ckpt-dir "$d/ck" --stop-at 10
cp -r "$d" "$TMP/rs1"
run 2 "$d" $GPT --steps 20 --tp 2 --ckpt-dir "$d/ck" --resume
rc=$?; check "resume tp 2 x dp 2 -> tp 2 x dp 1: exit 0 ($(tail -c 300 "$d.log"))" test $rc -eq 0
check "resume tp 2 x dp 2 -> tp 2 x dp 1: losses bitwise the uninterrupted tp 2 run" \
  cmp -s <(losses "$TMP/gpt.np2.tp2.z0.sp0/metrics.jsonl") <(losses "$d/metrics.jsonl")
check "resume tp 2 x dp 2 -> tp 2 x dp 1: model bitwise" cmp -s "$TMP/gpt.np2.tp2.z0.sp0/model.safetensors" "$d/model.safetensors"
run 2 "$TMP/rs1" $GPT --steps 20 --ckpt-dir "$TMP/rs1/ck" --resume
rc=$?; check "resume tp 2 x dp 2 -> tp 1 x dp 2: exit 0 ($(tail -c 300 "$TMP/rs1.log"))" test $rc -eq 0
m=$(drift "$TMP/gpt.single/metrics.jsonl" "$TMP/rs1/metrics.jsonl")
check "resume tp 2 x dp 2 -> tp 1 x dp 2: losses within 1e-5 of the single process (worst $m)" within "$m" 1e-5
d="$TMP/rs4"
"$LOOM" train $GPT --steps 20 --out "$d" --ckpt-dir "$d/ck" --stop-at 10 >/dev/null
run 4 "$d" $GPT --steps 20 --tp 4 --ckpt-dir "$d/ck" --resume
rc=$?; check "resume tp 1 -> tp 4: exit 0 ($(tail -c 300 "$d.log"))" test $rc -eq 0
check "resume tp 1 -> tp 4: steps 1-10 bitwise the single process's" \
  cmp -s <(losses "$TMP/gpt.single/metrics.jsonl" | head -10) <(losses "$d/metrics.jsonl" | head -10)
m=$(drift "$TMP/gpt.single/metrics.jsonl" "$d/metrics.jsonl")
check "resume tp 1 -> tp 4: losses within 1e-5 of the single process (worst $m)" within "$m" 1e-5
# --init-from a model file on tp 2: each rank loads its slices
run 2 "$TMP/init" $COMMON --steps 2 --tp 2 --init-from "$TMP/gpt.single/model.safetensors"
rc=$?; check "tp 2 --init-from the single process's model: exit 0 ($(tail -c 300 "$TMP/init.log"))" test $rc -eq 0

# validation during training on a tensor-parallel model: the single process's val loss
V="--val-data data/tinyshakespeare_val.bin --val-batches 4 --eval-every 2"
"$LOOM" train $GPT --steps 4 $V --out "$TMP/val1" >/dev/null
run 2 "$TMP/val2" $GPT --steps 4 $V --tp 2 --sp
vl() { sed -n 's/.*"val_loss": \([0-9.e+-]*\).*/\1/p' "$1"; }
check "tp 2 --sp: val losses within 1e-5 of the single process's ($(vl "$TMP/val2/metrics.jsonl" | tr '\n' ' '))" \
  test -n "$(vl "$TMP/val1/metrics.jsonl")" -a "$(paste <(vl "$TMP/val1/metrics.jsonl") <(vl "$TMP/val2/metrics.jsonl") |
    awk '{ d = $1 - $2; if (d < 0) d = -d; if (d / $1 > 1e-5 || NF != 2) bad = 1 } END { print bad + 0 }')" = 0

# the start-up report: the layout and the per-rank parts
run 4 "$TMP/rep" ${GPT/--quiet/} --steps 2 --tp 2
check "start-up names the layout" grep -q "data-parallel 2 x tensor-parallel 2" "$TMP/rep.log"
check "start-up names each rank's part of the model" grep -q "tensor parallel: 2 ranks per layer, each 2 of 4 heads" "$TMP/rep.log"
check "the end reports the tensor-parallel traffic beside Megatron's count" \
  grep -q "^tensor-parallel reductions per step and rank: .* MB sent (Megatron's count: " "$TMP/rep.log"
check "the traffic is Megatron's count" \
  python3 -c "import re,sys; m = re.search(r'([0-9.]+) MB sent \\(Megatron.s count: ([0-9.]+) MB', open('$TMP/rep.log').read()); sys.exit(0 if m and m.group(1) == m.group(2) else 1)"
run 2 "$TMP/repsp" ${GPT/--quiet/} --steps 1 --tp 2 --sp
check "start-up names sequence parallelism" grep -q "sequence parallel: the residual stream and norms" "$TMP/repsp.log"

# bad layouts: refused with the reason, once (rank 0 speaks for all)
mpi_error() { # mpi_error WHAT SUBSTRING NP FLAGS...: a non-zero exit and exactly one loom line, naming it
  local what=$1 want=$2 np=$3
  shift 3
  timeout 60 "${RUN[@]}" -np "$np" "$LOOM" train "$@" >/dev/null 2>"$TMP/mpi.err"
  local rc=$?
  check "$what: refused (exit $rc), one loom line naming it ($(grep '^loom' "$TMP/mpi.err" | head -c 300))" \
    test $rc -ne 0 -a $rc -ne 124 -a "$(grep -c '^loom' "$TMP/mpi.err")" -eq 1 -a "$(grep '^loom' "$TMP/mpi.err" | grep -cF -- "$want")" -eq 1
}
mpi_error "--tp 3 with 4 heads" "--tp 3: does not divide the model's 4 attention heads" 3 $GPT --steps 1 --tp 3 --out "$TMP/bad3"
mpi_error "--tp 2 on 3 ranks" "--tp 2: does not divide the 3 ranks of the job" 3 $GPT --steps 1 --tp 2 --out "$TMP/bad32"
mpi_error "--tp 4 with 2 key/value heads" "does not divide the model's 2 key/value heads" 4 \
  ${LLAMA/--n-kv-head 4/--n-kv-head 2} --steps 1 --tp 4 --out "$TMP/badkv"
expect_error "--sp without --tp" "--sp: sequence parallelism needs --tp 2 or more" \
  "$LOOM" train $GPT --steps 1 --sp --out "$TMP/badsp"
expect_error "--tp 2 without MPI ranks" "--tp 2: does not divide the 1 ranks of the job" \
  "$LOOM" train $GPT --steps 1 --tp 2 --out "$TMP/bad1"

# faults: a tp rank killed ends the job fast; a stopped one is named by the watchdog
fault_kill "killed tp rank" $GPT --tp 2
fault_stop "stopped tp rank" $GPT --tp 2
# the survivor waits in a tensor-parallel reduction (named with its group) or, when the
# rank was stopped between steps, in a collective of all ranks
check "stopped tp rank: the watchdog names the rank, the collective and its group ($(head -c 300 "$TMP/stop.err"))" \
  grep -qE "^loom: rank [01]: collective #[0-9]+, .*(on the tensor-parallel group of world ranks 0-1|\(all ranks\))" "$TMP/stop.err"
finish tp
