#!/usr/bin/env bash
# Two simulated hosts (network namespaces, Open MPI over TCP only, one rank per host):
# training gives the single process's losses and weights bitwise. Skipped (77) when not
# root, without network namespaces, or without an Open MPI build.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "needs root for network namespaces: skipped"; exit 77; }
"$LOOM" info | grep -q "^MPI: Open MPI" || { echo "needs an Open MPI build: skipped"; exit 77; }
command -v ip >/dev/null && command -v nsenter >/dev/null || { echo "needs iproute2 and util-linux: skipped"; exit 77; }
HERE=$(cd "$(dirname "$0")/../cluster" && pwd)
export LOOM_SIM_PREFIX=lm$$
trap 'bash "$HERE/netcluster.sh" down 2; rm -rf "$TMP"' EXIT
bash "$HERE/netcluster.sh" up 2 || { echo "cannot create network namespaces here: skipped"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
M="--model tiny --n-layer 2 --n-embd 64 --n-head 4 --block-size 64 --data $PWD/data/tinyshakespeare_train.bin
   --batch 2 --seq-len 32 --total-batch-tokens 256 --steps 6 --warmup 2 --lr 3e-3 --clip 0.5 --threads 1
   --peak-gflops 200 --quiet"
"$LOOM" train $M --out "$TMP/single"
printf '%sh1 slots=1\n%sh2 slots=1\n' "$LOOM_SIM_PREFIX" "$LOOM_SIM_PREFIX" >"$TMP/hosts"
timeout --kill-after=10 120 "$HERE/netns-rsh" "${LOOM_SIM_PREFIX}h1" \
  mpirun --hostfile "$TMP/hosts" -np 2 --map-by ppr:1:node --bind-to none --mca plm_rsh_agent "$HERE/netns-rsh" \
  --mca btl tcp,self --mca pml ob1 --mca btl_tcp_if_include 198.18.0.0/24 --mca oob_tcp_if_include 198.18.0.0/24 \
  --mca mpi_yield_when_idle 1 "$LOOM" train $(echo $M) --out "$TMP/sim" >"$TMP/sim.log" 2>&1
rc=$?
check "2 hosts over TCP: exit 0 (got $rc; $(tail -c 300 "$TMP/sim.log"))" test $rc -eq 0
check "2 hosts over TCP: losses bitwise the single process's" cmp -s <(cut -d, -f1-4 "$TMP/single/metrics.jsonl") <(cut -d, -f1-4 "$TMP/sim/metrics.jsonl")
check "2 hosts over TCP: final weights bitwise" cmp -s "$TMP/single/model.safetensors" "$TMP/sim/model.safetensors"
finish sim_cluster
