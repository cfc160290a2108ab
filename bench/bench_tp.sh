#!/usr/bin/env bash
# Tensor parallelism on one machine (Open MPI, shared memory):
#  1. memory per rank at tp 1/2/4 (4 ranks): what the description predicts (run.json
#     predicted_total, the sum loom_run_memory makes before allocating) against what was
#     allocated (all_allocated), and the ratio;
#  2. the tensor-parallel reductions per step and rank (the trainer's own count) against
#     Megatron's count for the model, the bytes sent and the time they take (exposed);
#  3. step time of `small` and `gpt2` on the machine's cores: tp 1 (one rank, every
#     core), dp 2 and tp 2 (two ranks, half the cores each), the same tokens per step,
#     ROUNDS rounds in turns, the median step (steps 2..) of each and the ratios.
#   bash bench/bench_tp.sh [BUILD=build]   (ROUNDS=3 STEPS=4 B=2 T=128 MODELS="small gpt2")
set -u
BUILD=${1:-build}
LOOM=$(realpath "$BUILD/loom")
ROUNDS=${ROUNDS:-3} STEPS=${STEPS:-4} B=${B:-2} T=${T:-128} MODELS=${MODELS:-small gpt2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
RUN=(mpirun --oversubscribe --mca btl self,vader)
TMP=$(mktemp -d /tmp/bench_tp.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
CORES=$(nproc)
DATA="--data data/tinyshakespeare_train.bin"
echo "bench_tp: $(lscpu | sed -n 's/^Model name: *//p'), $CORES cores, $("$LOOM" info | sed -n 's/^MPI: //p')"

echo "1. memory per rank, --model small --n-head 4 (4 ranks, batch 2 x 128, 2 micro-batches):"
printf "%4s %14s %14s %8s\n" tp "predicted MiB" "allocated MiB" ratio
for tp in 1 2 4; do
  "${RUN[@]}" -np 4 "$LOOM" train --model small --n-head 4 $DATA --batch 2 --seq-len 128 --total-batch-tokens 1024 \
    --threads 1 --steps 1 --tp $tp --out "$TMP/mem$tp" --quiet >/dev/null 2>&1
  python3 -c "
import json; m = json.load(open('$TMP/mem$tp/run.json'))['memory_mib_per_rank']
print('%4d %14.2f %14.2f %7.4fx' % ($tp, m['predicted_total'], m['all_allocated'], m['all_allocated'] / m['predicted_total']))"
done

echo "2. tensor-parallel traffic per step and rank (2 ranks, --tp 2, 4 micro-batches of $B x $T):"
for model in $MODELS; do
  for sp in "" --sp; do
    "${RUN[@]}" -np 2 "$LOOM" train --model $model $DATA --batch $B --seq-len $T --total-batch-tokens $((4 * B * T)) \
      --threads $((CORES / 2 > 0 ? CORES / 2 : 1)) --steps 3 --tp 2 $sp --out "$TMP/traffic" 2>/dev/null |
      sed -n "s/^tensor-parallel reductions per step and rank: /  $model ${sp:-   }: /p"
  done
done

echo "3. step time (median of steps 2..$STEPS over $ROUNDS rounds; the same $((2 * B * T)) tokens per step):"
step_ms() { # median ms of steps 2.. of a metrics.jsonl
  sed -n 's/.*"step": \([0-9]*\),.*"ms": \([0-9.]*\),.*/\1 \2/p' "$1" | awk '$1 > 1 { print $2 }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
for model in $MODELS; do
  F="--model $model $DATA --batch $B --seq-len $T --total-batch-tokens $((2 * B * T)) --steps $STEPS --quiet"
  half=$((CORES / 2 > 0 ? CORES / 2 : 1))
  : >"$TMP/tp1.ms"; : >"$TMP/dp2.ms"; : >"$TMP/tp2.ms"
  for r in $(seq "$ROUNDS"); do
    "$LOOM" train $F --threads "$CORES" --out "$TMP/r_tp1" >/dev/null && step_ms "$TMP/r_tp1/metrics.jsonl" >>"$TMP/tp1.ms"
    "${RUN[@]}" -np 2 "$LOOM" train $F --threads $half --out "$TMP/r_dp2" >/dev/null 2>&1 &&
      step_ms "$TMP/r_dp2/metrics.jsonl" >>"$TMP/dp2.ms"
    "${RUN[@]}" -np 2 "$LOOM" train $F --threads $half --tp 2 --out "$TMP/r_tp2" >/dev/null 2>&1 &&
      step_ms "$TMP/r_tp2/metrics.jsonl" >>"$TMP/tp2.ms"
  done
  a=$(median <"$TMP/tp1.ms") b=$(median <"$TMP/dp2.ms") c=$(median <"$TMP/tp2.ms")
  printf "  %-6s tp 1 (1 x %d threads) %8.1f ms | dp 2 (2 x %d) %8.1f ms | tp 2 (2 x %d) %8.1f ms | tp2/dp2 %.2fx, tp2/tp1 %.2fx\n" \
    "$model" "$CORES" "$a" "$half" "$b" "$half" "$c" "$(echo "$c / $b" | bc -l)" "$(echo "$c / $a" | bc -l)"
done

echo "4. drift across tp sizes (the tp test's tiny GPT-2, 50 steps, 4 ranks; against the single process):"
cat >"$TMP/wdiff.py" <<'PY'
import json, struct, sys, array
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); base = 8 + n; out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; a = array.array('f'); a.frombytes(b[base + s:base + e]); out[k] = a
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
worst = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
scale = max(abs(x) for k in a for x in a[k])
print('%.3g %.3g' % (worst, worst / scale))
PY
F="--model tiny --n-layer 2 --n-embd 64 --n-head 4 --block-size 64 $DATA --batch 2 --seq-len 32 --total-batch-tokens 256
   --warmup 2 --lr 3e-3 --clip 0.5 --threads 1 --steps 50 --quiet"
"$LOOM" train $F --out "$TMP/d1" >/dev/null
printf "  %-12s %22s %26s\n" layout "worst loss rel. drift" "worst weight |diff| (rel.)"
for lay in "--tp 2" "--tp 2 --sp" "--tp 4" "--tp 4 --sp"; do
  "${RUN[@]}" -np 4 "$LOOM" train $F $lay --out "$TMP/dx" >/dev/null 2>&1
  m=$(paste <(sed -E 's/.*"loss": ([^,]*),.*/\1/' "$TMP/d1/metrics.jsonl") <(sed -E 's/.*"loss": ([^,]*),.*/\1/' "$TMP/dx/metrics.jsonl") |
      awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > m) m = r } END { printf "%.3g", m }')
  read -r w wr < <(python3 "$TMP/wdiff.py" "$TMP/d1/model.safetensors" "$TMP/dx/model.safetensors")
  printf "  %-12s %22s %17s (%s)\n" "$lay" "$m" "$w" "$wr"
done
