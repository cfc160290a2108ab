#!/usr/bin/env bash
# loom plan's predicted step time against the measured one, 5 layouts on this machine's
# 2 cores (one thread per rank): `loom bench` under mpirun -np 2 measures the speeds
# (GEMM, memory, the link between the two ranks) into a machine file; for each layout
# `loom plan --machine --calibrate` (this model's layer timed with one thread) predicts and `loom train` runs STEPS steps ROUNDS times; the
# median measured step (steps 2..) beside the prediction, and the error in %.
#   bash bench/bench_plan.sh [BUILD=build]   (ROUNDS=3 STEPS=5 B=4 T=128)
set -u
BUILD=${1:-build}
LOOM=$(realpath "$BUILD/loom")
ROUNDS=${ROUNDS:-3} STEPS=${STEPS:-5} B=${B:-4} T=${T:-128}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
RUN=(mpirun --oversubscribe --mca btl self,vader)
TMP=$(mktemp -d /tmp/bench_plan.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
MODEL="--model tiny --n-layer 8 --n-embd 256 --n-head 8 --block-size 128 --vocab-size 8192"
head -c 400000 data/tinyshakespeare.txt | od -An -v -tu1 -w1 | tr -d ' ' |
  python3 -c "import sys, array; array.array('H', map(int, sys.stdin)).tofile(open(sys.argv[1], 'wb'))" "$TMP/bytes.u16"
SHAPE="--batch $B --seq-len $T --total-batch-tokens $((8 * B * T)) --threads 1"
echo "bench_plan: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $("$LOOM" info | sed -n 's/^MPI: //p')"
"${RUN[@]}" -np 2 "$LOOM" bench --threads 1 --out "$TMP/machine.json" >/dev/null 2>&1 || { echo "loom bench failed"; exit 1; }
echo "machine: $(cat "$TMP/machine.json")"
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf "%-28s %12s %12s %8s\n" layout "predicted ms" "measured ms" "error"
for lay in "1:" "2:--zero 1" "2:--tp 2" "2:--pp 2" "2:--pp 2 --pp-schedule gpipe"; do
  np=${lay%%:*} flags=${lay#*:}
  one="--tp 1" # one layout, not a search
  [[ " $flags " == *" --tp "* || " $flags " == *" --pp "* ]] && one=
  pred=$("$LOOM" plan $MODEL $SHAPE --ranks "$np" --machine "$TMP/machine.json" --calibrate $one $flags |
    sed -nE 's/^predicted step: ([0-9.]+) ms.*/\1/p')
  : >"$TMP/t"
  for r in $(seq "$ROUNDS"); do
    if [ "$np" = 1 ]; then
      "$LOOM" train $MODEL $SHAPE --data "$TMP/bytes.u16" --steps "$STEPS" --out "$TMP/o" --quiet >/dev/null 2>&1
    else
      "${RUN[@]}" -np "$np" "$LOOM" train $MODEL $SHAPE --data "$TMP/bytes.u16" --steps "$STEPS" $flags --out "$TMP/o" \
        --quiet >/dev/null 2>&1
    fi
    tail -n +2 "$TMP/o/metrics.jsonl" | sed -E 's/.*"ms": ([0-9.]+).*/\1/' | median >>"$TMP/t"
  done
  meas=$(median <"$TMP/t")
  printf "%-28s %12.1f %12.1f %7.0f%%\n" "np $np ${flags:-(one process)}" "$pred" "$meas" \
    "$(echo "100 * ($pred - $meas) / $meas" | bc -l)"
done
