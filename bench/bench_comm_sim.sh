#!/usr/bin/env bash
# bench_comm across two simulated hosts (network namespaces, Open MPI over TCP), unshaped
# and shaped to RATE (default 1gbit), one thread per rank (the simulated hosts share this
# machine's cores). Root only. usage: bench/bench_comm_sim.sh [BUILD_DIR] [MAX_MIB] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
max=${2:-64}
rate=${3:-1gbit}
C=$PWD/tests/cluster
export LOOM_SIM_PREFIX=lb$$ OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
hosts=$(mktemp)
trap 'bash "$C/netcluster.sh" down 2; rm -f "$hosts"' EXIT
printf '%sh1 slots=1\n%sh2 slots=1\n' "$LOOM_SIM_PREFIX" "$LOOM_SIM_PREFIX" >"$hosts"
run() {
  "$C/netns-rsh" "${LOOM_SIM_PREFIX}h1" mpirun --hostfile "$hosts" -np 2 --map-by ppr:1:node --bind-to none \
    --mca plm_rsh_agent "$C/netns-rsh" --mca btl tcp,self --mca pml ob1 --mca btl_tcp_if_include 198.18.0.0/24 \
    --mca oob_tcp_if_include 198.18.0.0/24 -x OMP_NUM_THREADS=1 "$PWD/$build/bench/bench_comm" "$max"
}
bash "$C/netcluster.sh" up 2
echo "== 2 simulated hosts, TCP, unshaped =="
run
bash "$C/netcluster.sh" down 2
bash "$C/netcluster.sh" up 2 "$rate"
echo "== 2 simulated hosts, TCP, shaped to $rate =="
run
