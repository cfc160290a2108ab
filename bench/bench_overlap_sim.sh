#!/usr/bin/env bash
# Exposed communication: loom train with 2 ranks on 2 simulated hosts (network
# namespaces, Open MPI over TCP, links shaped to RATE, default 1gbit), one thread per
# rank, with the gradient reduction overlapped with the backward (--overlap 1), after
# it (--overlap 0), and skipped (each host trains its half of the batch alone, at the
# same time, so the CPUs are shared the same way), ROUNDS rounds (3) of STEPS steps (10)
# in turns. Prints the median step time of each over every step 2.. of every round with
# its quartiles, and the share of the communication time that the overlap hides,
#   hidden = (t_off - t_on) / (t_off - t_skip),
# with the range the quartiles give (quote no figure whose range is wide).
# Root only. usage: bench/bench_overlap_sim.sh [BUILD_DIR] [RATE] [ZERO] [extra train flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rate=${2:-1gbit}
zero=${3:-0}
shift $(($# < 3 ? $# : 3))
C=$PWD/tests/cluster
LOOM=$PWD/$build/loom
export LOOM_SIM_PREFIX=lo$$ OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'bash "$C/netcluster.sh" down 2; rm -rf "$tmp"' EXIT
printf '%sh1 slots=1\n%sh2 slots=1\n' "$LOOM_SIM_PREFIX" "$LOOM_SIM_PREFIX" >"$tmp/hosts"
B=${BATCH:-8} T=${SEQ:-256} STEPS=${STEPS:-10}
F=(--model "${MODEL:-small}" --data data/tinyshakespeare_train.bin --batch "$B" --seq-len "$T" --steps "$STEPS"
   --threads 1 --peak-gflops 235 --quiet "$@")
ranks2() { # $1: --overlap value
  "$C/netns-rsh" "${LOOM_SIM_PREFIX}h1" mpirun --hostfile "$tmp/hosts" -np 2 --map-by ppr:1:node --bind-to none \
    --mca plm_rsh_agent "$C/netns-rsh" --mca btl tcp,self --mca pml ob1 --mca btl_tcp_if_include 198.18.0.0/24 \
    --mca oob_tcp_if_include 198.18.0.0/24 "$LOOM" train "${F[@]}" --total-batch-tokens $((2 * B * T)) \
    --zero "$zero" --overlap "$1" --out "$tmp/ov$1" >"$tmp/ov$1.log" 2>&1
}
bash "$C/netcluster.sh" up 2 "$rate"
ROUNDS=${ROUNDS:-3}
echo "bench_overlap_sim: 2 ranks on 2 simulated hosts, TCP shaped to $rate, ${MODEL:-small} B=$B T=$T, --zero $zero," \
  "$STEPS steps x $ROUNDS rounds in turns, $*"
# each round: overlap on, off, and the communication skipped (each host's rank alone on
# its half of the batch, both at once); every step time of steps 2.. of every round kept
: >"$tmp/on.ms"; : >"$tmp/off.ms"; : >"$tmp/skip.ms"
steps_ms() { /usr/bin/python3 -c "
import json, sys
for l in list(open(sys.argv[1]))[1:]: print(json.loads(l)['ms'])" "$1"; }
for r in $(seq "$ROUNDS"); do
  ranks2 1 && steps_ms "$tmp/ov1/metrics.jsonl" >>"$tmp/on.ms"
  ranks2 0 && steps_ms "$tmp/ov0/metrics.jsonl" >>"$tmp/off.ms"
  "$LOOM" train "${F[@]}" --total-batch-tokens $((B * T)) --out "$tmp/skip0" >/dev/null 2>&1 &
  "$LOOM" train "${F[@]}" --total-batch-tokens $((B * T)) --seed 7 --out "$tmp/skip1" >/dev/null 2>&1
  wait
  paste <(steps_ms "$tmp/skip0/metrics.jsonl") <(steps_ms "$tmp/skip1/metrics.jsonl") |
    awk '{ print ($1 > $2 ? $1 : $2) }' >>"$tmp/skip.ms"
done
grep -h "gradient communication" "$tmp/ov1.log" || true
/usr/bin/python3 - "$tmp" <<'PY'
import statistics, sys
d = sys.argv[1]
ms = {k: [float(x) for x in open("%s/%s.ms" % (d, k))] for k in ("on", "off", "skip")}
q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))]
for k, name in (("on", "step, overlap on"), ("off", "step, overlap off"), ("skip", "step, communication skipped")):
    v = ms[k]
    print("%-30s median %7.0f ms  (25%%-75%% %7.0f-%-7.0f, %d steps)" % (name, statistics.median(v), q(v, .25), q(v, .75), len(v)))
on, off, skip = (statistics.median(ms[k]) for k in ("on", "off", "skip"))
comm = off - skip
print("communication (off - skipped): %.0f ms; exposed with overlap (on - skipped): %.0f ms" % (comm, on - skip))
# the spread of the hidden share: from the quartiles of on and off (skip at its median)
lo = (q(ms["off"], .25) - q(ms["on"], .75)) / (q(ms["off"], .25) - skip) if q(ms["off"], .25) > skip else float("nan")
hi = (q(ms["off"], .75) - q(ms["on"], .25)) / (q(ms["off"], .75) - skip) if q(ms["off"], .75) > skip else float("nan")
print("overlap hides %.0f%% of the communication time (from the quartiles: %.0f%% to %.0f%%)" %
      (100.0 * (off - on) / comm if comm > 0 else float("nan"), 100 * lo, 100 * hi))
PY
