#!/usr/bin/env bash
# Multi-node SLURM across two simulated hosts (network namespaces; slurmctld and a slurmd
# per host; Open MPI over TCP between them): `srun -N 2 --mpi=pmix` trains bitwise like
# one process; tp 2 inside the hosts x dp 2 across them bitwise like the one-host tp 2 run; pp 2 across the hosts
# x dp 2 bitwise like one process; a 2-node sbatch job stopped by `scancel --signal=USR1` writes its checkpoint
# with MPI-IO and exits 3, and the resubmitted job (--resume, ZeRO-2) ends bitwise where an
# uninterrupted single process does. Skipped (77) when not root, without SLURM or network
# namespaces, or without an Open MPI build.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "needs root: skipped"; exit 77; }
command -v slurmctld >/dev/null && command -v srun >/dev/null || { echo "SLURM not installed: skipped"; exit 77; }
"$LOOM" info | grep -q "^MPI: Open MPI" || { echo "needs an Open MPI build: skipped"; exit 77; }
HERE=$(cd "$(dirname "$0")/../cluster" && pwd)
export LOOM_SIM_PREFIX=ls$$
trap 'bash "$HERE/slurm_sim_down.sh"; bash "$HERE/netcluster.sh" down 2; rm -rf "$TMP"' EXIT
bash "$HERE/netcluster.sh" up 2 || { echo "cannot create network namespaces here: skipped"; exit 77; }
bash "$HERE/slurm_sim_up.sh" 2 >"$TMP/up.log" 2>&1 || { echo "SLURM did not start: skipped"; cat "$TMP/up.log"; exit 77; }
# clients run on host 1; Open MPI between the hosts over TCP in the simulated network
H1=("$HERE/netns-rsh" "${LOOM_SIM_PREFIX}h1")
ENV="SLURM_CONF=/etc/slurm-sim/slurm.conf OMPI_MCA_btl=tcp,self OMPI_MCA_pml=ob1 OMPI_MCA_btl_tcp_if_include=198.18.0.0/24"
M="--model tiny --n-layer 2 --n-embd 64 --n-head 4 --block-size 64 --data $PWD/data/tinyshakespeare_train.bin
   --batch 2 --seq-len 32 --total-batch-tokens 256 --steps 8 --warmup 2 --lr 3e-3 --clip 0.5 --threads 1
   --peak-gflops 200 --quiet"
M=$(echo $M)
"$LOOM" train $M --out "$TMP/single" --ckpt-dir "$TMP/single/ck"

timeout --kill-after=10 120 "${H1[@]}" "$ENV srun -N 2 -n 2 --mpi=pmix $LOOM train ${M/--quiet/} --out $TMP/srun" >"$TMP/srun.log" 2>&1
rc=$?
check "srun -N 2 --mpi=pmix across 2 hosts: exit 0 (got $rc; $(tail -c 300 "$TMP/srun.log"))" test $rc -eq 0
check "srun across 2 hosts: one rank on each node" grep -q "^ranks: 2 (1 per node)" "$TMP/srun.log"
check "srun across 2 hosts: losses bitwise the single process's" \
  cmp -s <(cut -d, -f1-4 "$TMP/single/metrics.jsonl") <(cut -d, -f1-4 "$TMP/srun/metrics.jsonl")
check "srun across 2 hosts: final weights bitwise" cmp -s "$TMP/single/model.safetensors" "$TMP/srun/model.safetensors"

# tensor parallelism inside each host, data parallelism across them: tp 2 x dp 2 over 2
# hosts is bitwise the one-host tp 2 run (the same tp: dp does not change a bit)
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun --oversubscribe --mca btl self,vader \
  -np 2 "$LOOM" train $M --tp 2 --out "$TMP/tp_local" >"$TMP/tp_local.log" 2>&1
rc=$?; check "one host, tp 2 (mpirun): exit 0 ($(tail -c 300 "$TMP/tp_local.log"))" test $rc -eq 0
timeout --kill-after=10 180 "${H1[@]}" "$ENV srun -N 2 -n 4 --ntasks-per-node 2 --mpi=pmix $LOOM train ${M/--quiet/} --tp 2 --out $TMP/srun_tp" \
  >"$TMP/srun_tp.log" 2>&1
rc=$?
check "srun -N 2 -n 4 --tp 2: exit 0 (got $rc; $(tail -c 300 "$TMP/srun_tp.log"))" test $rc -eq 0
check "srun -N 2 -n 4 --tp 2: tensor-parallel pairs inside the hosts" \
  grep -q "^ranks: 4 (2 per node) = data-parallel 2 x tensor-parallel 2" "$TMP/srun_tp.log"
check "srun -N 2 -n 4 --tp 2: losses bitwise the one-host tp 2 run's" \
  cmp -s <(cut -d, -f1-4 "$TMP/tp_local/metrics.jsonl") <(cut -d, -f1-4 "$TMP/srun_tp/metrics.jsonl")
check "srun -N 2 -n 4 --tp 2: final weights bitwise" cmp -s "$TMP/tp_local/model.safetensors" "$TMP/srun_tp/model.safetensors"

# pipeline parallelism across the hosts: 4 ranks, 2 per host, pp 2 x dp 2: stage 0 on host
# 1, stage 1 on host 2 (activations and their gradients over TCP), bitwise one process
timeout --kill-after=10 180 "${H1[@]}" "$ENV srun -N 2 -n 4 --ntasks-per-node 2 --mpi=pmix $LOOM train ${M/--quiet/} --pp 2 --out $TMP/srun_pp" \
  >"$TMP/srun_pp.log" 2>&1
rc=$?
check "srun -N 2 -n 4 --pp 2: exit 0 (got $rc; $(tail -c 300 "$TMP/srun_pp.log"))" test $rc -eq 0
check "srun -N 2 -n 4 --pp 2: a stage per host" \
  grep -q "^ranks: 4 (2 per node) = data-parallel 2 x tensor-parallel 1 x pipeline 2" "$TMP/srun_pp.log"
check "srun -N 2 -n 4 --pp 2: losses bitwise the single process's" \
  cmp -s <(cut -d, -f1-4 "$TMP/single/metrics.jsonl") <(cut -d, -f1-4 "$TMP/srun_pp/metrics.jsonl")
check "srun -N 2 -n 4 --pp 2: final weights bitwise" cmp -s "$TMP/single/model.safetensors" "$TMP/srun_pp/model.safetensors"

# preemption across nodes: USR1 -> checkpoint (MPI-IO, both hosts writing) + exit 3; resubmit resumes
job() { # $1: extra flags; prints the job id
  "${H1[@]}" "$ENV LOOM_TEST_CKPT_PAUSE_MS=${LOOM_TEST_CKPT_PAUSE_MS:-0} sbatch --parsable -N 2 -n 2 -o $TMP/job.%j.out --wrap \
    'srun --mpi=pmix $LOOM train $M --zero 2 --ckpt-dir $TMP/jobck --out $TMP/job $1; echo loom-exit=\$?'"
}
waitjob() {
  for _ in $(seq "$(($2 * 5))"); do
    "${H1[@]}" "SLURM_CONF=/etc/slurm-sim/slurm.conf squeue -h -j $1" 2>/dev/null | grep -q . || return 0
    sleep 0.2
  done
  return 1
}
# each save held 300 ms (the crash tests' fault-injection knob) so the signal lands mid-run
J=$(LOOM_TEST_CKPT_PAUSE_MS=300 job "--ckpt-every 1 --keep 2" | tail -1)
for _ in $(seq 300); do [ -s "$TMP/job/metrics.jsonl" ] && break; sleep 0.1; done
"${H1[@]}" "SLURM_CONF=/etc/slurm-sim/slurm.conf scancel --signal=USR1 $J"
waitjob "$J" 60
check "sbatch -N 2: the job ended" test $? -eq 0
check "scancel --signal=USR1 across 2 nodes: loom exited 3 ($(tail -c 300 "$TMP/job.$J.out"))" \
  grep -q "loom-exit=3" "$TMP/job.$J.out"
check "scancel --signal=USR1 across 2 nodes: a checkpoint was written" test -s "$TMP/jobck/latest"
J2=$(job "--resume" | tail -1)
waitjob "$J2" 120
check "resubmitted job across 2 nodes: exit 0 ($(tail -c 300 "$TMP/job.$J2.out"))" grep -q "loom-exit=0" "$TMP/job.$J2.out"
check "resumed across 2 nodes: final checkpoint bitwise the single process's" \
  cmp -s "$TMP/single/ck/step_00000008.safetensors" "$TMP/jobck/step_00000008.safetensors"
finish slurm_sim
