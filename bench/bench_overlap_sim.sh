#!/usr/bin/env bash
# Exposed communication: loom train with 2 ranks on 2 simulated hosts (network
# namespaces, Open MPI over TCP, links shaped to RATE, default 1gbit), one thread per
# rank, with the gradient reduction overlapped with the backward (--overlap 1), after
# it (--overlap 0), and skipped (each host trains its half of the batch alone, at the
# same time, so the CPUs are shared the same way). Prints the median step time of each
# and the share of the communication time that the overlap hides:
#   hidden = (t_off - t_on) / (t_off - t_skip).
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
B=${BATCH:-8} T=${SEQ:-256} STEPS=${STEPS:-6}
F=(--model "${MODEL:-small}" --data data/tinyshakespeare_train.bin --batch "$B" --seq-len "$T" --steps "$STEPS"
   --threads 1 --peak-gflops 235 --quiet "$@")
median_ms() { # median step time over steps 2.. of a metrics.jsonl
  /usr/bin/python3 -c "
import json, statistics, sys
ms = [json.loads(l)['ms'] for l in open(sys.argv[1])][1:]
print('%.0f' % statistics.median(ms))" "$1"
}
ranks2() { # $1: --overlap value
  "$C/netns-rsh" "${LOOM_SIM_PREFIX}h1" mpirun --hostfile "$tmp/hosts" -np 2 --map-by ppr:1:node --bind-to none \
    --mca plm_rsh_agent "$C/netns-rsh" --mca btl tcp,self --mca pml ob1 --mca btl_tcp_if_include 198.18.0.0/24 \
    --mca oob_tcp_if_include 198.18.0.0/24 "$LOOM" train "${F[@]}" --total-batch-tokens $((2 * B * T)) \
    --zero "$zero" --overlap "$1" --out "$tmp/ov$1" >"$tmp/ov$1.log" 2>&1
}
bash "$C/netcluster.sh" up 2 "$rate"
echo "bench_overlap_sim: 2 ranks on 2 simulated hosts, TCP shaped to $rate, ${MODEL:-small} B=$B T=$T, --zero $zero, $*"
ranks2 1
ranks2 0
# communication skipped: each host's rank alone on its half of the batch, both at once
"$LOOM" train "${F[@]}" --total-batch-tokens $((B * T)) --out "$tmp/skip0" >/dev/null 2>&1 &
"$LOOM" train "${F[@]}" --total-batch-tokens $((B * T)) --seed 7 --out "$tmp/skip1" >/dev/null 2>&1
wait
on=$(median_ms "$tmp/ov1/metrics.jsonl") off=$(median_ms "$tmp/ov0/metrics.jsonl")
s0=$(median_ms "$tmp/skip0/metrics.jsonl") s1=$(median_ms "$tmp/skip1/metrics.jsonl")
skip=$(( (s0 > s1 ? s0 : s1) ))
grep -h "gradient communication" "$tmp/ov1.log" || true
printf '%-34s %8s ms\n' "step, overlap on" "$on" "step, overlap off" "$off" "step, communication skipped" "$skip"
/usr/bin/python3 -c "
on, off, skip = $on, $off, $skip
comm = off - skip
print('communication (off - skipped): %d ms; exposed with overlap (on - skipped): %d ms' % (comm, on - skip))
print('overlap hides %.0f%% of the communication time' % (100.0 * (off - on) / comm if comm > 0 else float('nan')))"
