#!/usr/bin/env bash
# Pipeline parallelism on one machine (Open MPI, shared memory), 2 stages, one rank per
# core (pp 4 would need 4 cores: on fewer the stages share cores and idle time is not a
# bubble any more):
#  1. the measured bubble against (p-1)/(m+p-1) at m = 1, 2, 4, 8 micro-batches per step,
#     each schedule: from each rank's trace, the share of the step (its first forward to
#     its last backward) in which the stage computes nothing, averaged over the stages
#     and steps 2..;
#  2. step time of gpipe against 1f1b at the same m (medians over ROUNDS rounds in
#     turns), and one process on the same cores;
#  3. activation memory per stage of each schedule (the trainer's start-up lines: the
#     sets each stage keeps times one micro-batch's arena).
#   bash bench/bench_pp.sh [BUILD=build]   (ROUNDS=3 STEPS=5 B=4 T=128 M="1 2 4 8")
set -u
BUILD=${1:-build}
LOOM=$(realpath "$BUILD/loom")
ROUNDS=${ROUNDS:-3} STEPS=${STEPS:-5} B=${B:-4} T=${T:-128} MS=${M:-1 2 4 8}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
RUN=(mpirun --oversubscribe --mca btl self,vader)
TMP=$(mktemp -d /tmp/bench_pp.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
MODEL="--model tiny --n-layer 8 --n-embd 256 --n-head 8 --block-size 128 --vocab-size 8192"
DATA="--data data/tinyshakespeare_train.bin"
echo "bench_pp: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $("$LOOM" info | sed -n 's/^MPI: //p')"
echo "model: 8 layers, 256 channels, vocab 8192; micro-batch $B x $T; 2 stages, 1 thread per rank"
# the byte corpus keeps the ids inside the small vocabulary
head -c 400000 data/tinyshakespeare.txt | od -An -v -tu1 -w1 | tr -d ' ' |
  python3 -c "import sys, array; array.array('H', map(int, sys.stdin)).tofile(open(sys.argv[1], 'wb'))" "$TMP/bytes.u16"
DATA="--data $TMP/bytes.u16"

bubble() { # bubble PREFIX RANKS: per step (2..), the share of the pipeline's span (the first forward
  # on any stage to the last backward; the traces share rank 0's clock) in which a stage
  # computes nothing, averaged over stages and steps
  python3 - "$1" "$2" <<'EOF'
import json, sys
prefix, ranks = sys.argv[1], int(sys.argv[2])
per = []  # per rank: a list of steps, each the rank's forward/backward events
for r in range(ranks):
    ev = [e for e in json.load(open('%s.rank%d.json' % (prefix, r))) if e.get('ph') == 'X']
    starts = [e['ts'] for e in ev if e['name'] == 'data'] + [1e30]
    work = [e for e in ev if e['name'] == 'forward' or e['name'].startswith('backward')]
    per.append([[e for e in work if starts[k] <= e['ts'] < starts[k + 1]] for k in range(len(starts) - 1)])
shares = []
for k in range(1, min(len(p) for p in per)):
    a = min(e['ts'] for p in per for e in p[k])
    b = max(e['ts'] + e['dur'] for p in per for e in p[k])
    shares += [1 - sum(e['dur'] for e in p[k]) / (b - a) for p in per]
print('%.1f' % (100 * sum(shares) / len(shares)))
EOF
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
steptime() { # median step ms of steps 2.. of a metrics.jsonl
  tail -n +2 "$1" | sed -E 's/.*"ms": ([0-9.]+).*/\1/' | median
}

echo "1+2. bubble and step time (median of $ROUNDS rounds, steps 2..$STEPS):"
printf "%3s %8s %10s %10s %10s %12s %12s\n" m schedule "theory %" "measured %" "step ms" "one proc ms" "pp/one"
for m in $MS; do
  tokens=$((m * B * T))
  for r in $(seq "$ROUNDS"); do
    for sched in gpipe 1f1b; do
      "${RUN[@]}" -np 2 "$LOOM" train $MODEL $DATA --batch $B --seq-len $T --total-batch-tokens $tokens --steps $STEPS \
        --threads 1 --pp 2 --pp-schedule $sched --trace "$TMP/tr.$m.$sched.$r" --out "$TMP/o.$m.$sched.$r" --quiet \
        >/dev/null 2>&1 || { echo "pp run failed"; exit 1; }
      bubble "$TMP/tr.$m.$sched.$r" 2 >>"$TMP/b.$m.$sched"
      steptime "$TMP/o.$m.$sched.$r/metrics.jsonl" >>"$TMP/t.$m.$sched"
    done
    "$LOOM" train $MODEL $DATA --batch $B --seq-len $T --total-batch-tokens $tokens --steps $STEPS --threads 2 \
      --out "$TMP/o.$m.one.$r" --quiet >/dev/null 2>&1 || { echo "one-process run failed"; exit 1; }
    steptime "$TMP/o.$m.one.$r/metrics.jsonl" >>"$TMP/t.$m.one"
  done
  one=$(median <"$TMP/t.$m.one")
  for sched in gpipe 1f1b; do
    t=$(median <"$TMP/t.$m.$sched")
    printf "%3d %8s %10.1f %10.1f %10.1f %12.1f %11.2fx\n" "$m" $sched "$(echo "100 / ($m + 1)" | bc -l)" \
      "$(median <"$TMP/b.$m.$sched")" "$t" "$one" "$(echo "$t / $one" | bc -l)"
  done
done

echo "3. activation memory per stage (m = 8; the trainer's start-up report):"
for sched in gpipe 1f1b; do
  "${RUN[@]}" -np 2 "$LOOM" train $MODEL $DATA --batch $B --seq-len $T --total-batch-tokens $((8 * B * T)) --steps 1 \
    --threads 1 --pp 2 --pp-schedule $sched --out "$TMP/mem" 2>/dev/null |
    sed -n "s/^  stage \([0-9]\): layers \([0-9-]*\), parameters \([0-9.]*\) MiB, activations \([0-9]*\) x \([0-9.]*\) MiB.*/\1 \2 \3 \4 \5/p" |
    while read -r s layers par sets one; do
      printf "  %-5s stage %s (layers %s): %2d sets x %6.2f MiB = %7.2f MiB of activations, parameters %.2f MiB\n" \
        $sched "$s" "$layers" "$sets" "$one" "$(echo "$sets * $one" | bc -l)" "$par"
    done
done
