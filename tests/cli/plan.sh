#!/usr/bin/env bash
# loom plan: the bytes it predicts for each rank of every pipeline stage equal, byte for
# byte, what the trainer allocates for the same flags (its start-up report, every stage)
# over 12 layouts of GPT-2 and Llama (one process; dp, tp, --sp, pp with both schedules,
# uneven layers, ZeRO 0/1/2); the search over a 1,024-node job answers with valid layouts
# ranked (the best one's figures those of a plan of that one layout), also as JSON; bad
# input gets one line. MPI layouts are skipped (77) without an MPI build or mpirun.
source "$(dirname "$0")/lib.sh"
M="--model tiny --n-layer 4 --n-embd 64 --n-head 4 --block-size 64"
L="--model llama-tiny --n-layer 4 --n-embd 64 --n-head 4 --n-kv-head 2 --ffn-dim 96 --block-size 64"
SHAPE="--batch 2 --seq-len 32 --total-batch-tokens 512 --threads 1"
# the per-stage figures of the trainer's report and of the plan, one line per stage
trained() { sed -nE 's/^allocated per rank( on stage [0-9]+)? \(bytes\): //p' "$1"; }
planned() { sed -nE 's/^bytes per rank on stage [0-9]+ \(layers [0-9-]+, [0-9]+ activation sets?\): (.*) \([0-9.]+ MiB\)$/\1/p' "$1"; }
compare() { # compare WHAT NP MODEL FLAGS...
  local what=$1 np=$2 model=$3
  shift 3
  local out="$TMP/t.$RANDOM"
  if [ "$np" = 1 ]; then
    "$LOOM" train ${!model} $SHAPE --data data/tinyshakespeare_train.bin --steps 1 --peak-gflops 100 "$@" \
      --out "$out" >"$out.log" 2>&1
  else
    timeout 200 "${RUN[@]}" -np "$np" "$LOOM" train ${!model} $SHAPE --data data/tinyshakespeare_train.bin --steps 1 \
      --peak-gflops 100 "$@" --out "$out" >"$out.log" 2>&1
  fi
  check "$what: the trainer ran ($(tail -c 200 "$out.log"))" test $? -eq 0
  local one="--tp 1" # a single layout, not a search
  [[ " $* " == *" --tp "* || " $* " == *" --pp "* ]] && one=
  "$LOOM" plan ${!model} $SHAPE --ranks "$np" $one "$@" >"$out.plan" 2>&1
  check "$what: the plan ran ($(head -c 200 "$out.plan"))" test $? -eq 0
  check "$what: stages reported ($(trained "$out.log" | wc -l) and planned" test "$(trained "$out.log" | wc -l)" -ge 1
  check "$what: the plan's bytes of every stage are the trainer's ($(trained "$out.log" | head -1) vs $(planned "$out.plan" | head -1))" \
    cmp -s <(trained "$out.log") <(planned "$out.plan")
}
compare "GPT-2, one process" 1 M
compare "Llama, one process" 1 L
if "$LOOM" info | grep -q "^MPI: not in this build" || ! command -v "${MPIRUN:-mpirun}" >/dev/null; then
  echo "no MPI: the MPI layouts are not run"
else
  mpi_setup
  compare "GPT-2 dp 4 ZeRO 2" 4 M --zero 2
  compare "GPT-2 tp 2" 2 M --tp 2
  compare "GPT-2 pp 2" 2 M --pp 2
  compare "GPT-2 pp 4 gpipe" 4 M --pp 4 --pp-schedule gpipe
  compare "GPT-2 pp 2 x dp 2 ZeRO 1" 4 M --pp 2 --zero 1
  compare "GPT-2 pp 2 x dp 2 ZeRO 2, layers 1,3" 4 M --pp 2 --zero 2 --pp-layers 1,3
  compare "GPT-2 tp 2 --sp x pp 2" 4 M --tp 2 --sp --pp 2
  compare "GPT-2 dp 2 x tp 2 x pp 2 ZeRO 1" 8 M --tp 2 --pp 2 --zero 1
  compare "Llama pp 4" 4 L --pp 4
  compare "Llama tp 2 x pp 2" 4 L --tp 2 --pp 2
fi

# the search: 1,024 nodes of 8 ranks, 80 GiB each, gpt2-xl, on a machine described by a file
echo '{"gemm_gflops": 40, "mem_gbps": 100, "link_gbps_node": 100, "link_gbps_net": 25, "link_us": 3}' >"$TMP/machine.json"
"$LOOM" plan --machine "$TMP/machine.json" --model gpt2-xl --nodes 1024 --ranks-per-node 8 --mem 80G --batch 4 --seq-len 1024 \
  --total-batch-tokens $((4096 * 1024)) --threads 8 >"$TMP/search.out" 2>&1
check "search: exit 0 ($(head -c 300 "$TMP/search.out"))" test $? -eq 0
check "search: valid layouts ranked" grep -qE "^8192 ranks \(8 per node\): [1-9][0-9]* valid layouts" "$TMP/search.out"
best=$(awk '$1 == "1" { print $2, $3, $4, $5, $6, $11 }' "$TMP/search.out")
read -r dp tp pp zero sp ms <<<"$best"
check "search: the best layout fits and multiplies to 8192 ranks ($best)" test "$((dp * tp * pp))" -eq 8192
"$LOOM" plan --model gpt2-xl --nodes 1024 --ranks-per-node 8 --mem 80G --batch 4 --seq-len 1024 \
  --total-batch-tokens $((4096 * 1024)) --threads 8 --machine "$TMP/machine.json" --tp "$tp" --pp "$pp" --zero "$zero" $([ "$sp" = 1 ] && echo --sp) \
  >"$TMP/best.out" 2>&1
one=$(sed -nE 's/^predicted step: ([0-9.]+) ms.*/\1/p' "$TMP/best.out")
check "search: the best layout's predicted step ($ms ms) is its own plan's ($one ms)" test "$ms" = "$one"
"$LOOM" plan --model gpt2-xl --nodes 4 --ranks-per-node 8 --batch 4 --seq-len 1024 --total-batch-tokens $((64 * 1024)) \
  --json >"$TMP/search.json" 2>&1
check "search --json: one object with the layouts" /usr/bin/python3 -c "
import json, sys; d = json.load(open(sys.argv[1])); assert d['valid'] >= 1 and d['layouts'][0]['stages']" "$TMP/search.json"

# bad input: one line each
expect_error "plan without ranks" "give --ranks N or --nodes N" "$LOOM" plan $M
expect_error "plan: tp x pp not dividing the ranks" "--tp 1 x --pp 3 = 3: does not divide the 4 ranks" \
  "$LOOM" plan $M $SHAPE --ranks 4 --pp 3
expect_error "plan: --mem not a size" "--mem: 'lots' is not a size" "$LOOM" plan $M --ranks 2 --mem lots
expect_error "plan: a missing machine file" "--machine /nonexistent.json: cannot read it" \
  "$LOOM" plan $M --ranks 2 --tp 1 --machine /nonexistent.json
finish plan
