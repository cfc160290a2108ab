#!/usr/bin/env bash
# Under a real single-node SLURM: `srun --mpi=pmix` gives the single process's result
# bitwise; `scancel --signal=USR1` on a running job makes loom finish its step, write a
# checkpoint and exit 3; srun with the wrong PMI plugin is refused with a hint.
# Skipped (77) when not root, without SLURM, or without an Open MPI build.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "needs root: skipped"; exit 77; }
command -v slurmctld >/dev/null && command -v srun >/dev/null || { echo "SLURM not installed: skipped"; exit 77; }
"$LOOM" info | grep -q "^MPI: Open MPI" || { echo "needs an Open MPI build: skipped"; exit 77; }
HERE=$(cd "$(dirname "$0")/../cluster" && pwd)
bash "$HERE/slurm_up.sh" >"$TMP/up.log" 2>&1 || { echo "SLURM did not start: skipped"; cat "$TMP/up.log"; exit 77; }
trap 'bash "$HERE/slurm_down.sh"; rm -rf "$TMP"' EXIT
waitjob() { for _ in $(seq "$(($2 * 5))"); do squeue -h -j "$1" 2>/dev/null | grep -q . || return 0; sleep 0.2; done; scancel "$1"; return 1; }
M="--model tiny --n-layer 2 --n-embd 64 --n-head 4 --block-size 64 --data $PWD/data/tinyshakespeare_train.bin
   --batch 2 --seq-len 32 --total-batch-tokens 256 --warmup 2 --lr 3e-3 --clip 0.5 --threads 1
   --peak-gflops 200 --quiet"
M0=$M # without --steps, for the cases that set their own (a flag given twice is refused)
M="$M0 --steps 6"
"$LOOM" train $M --out "$TMP/single"
timeout 120 srun --mpi=pmix -n 2 --overcommit "$LOOM" train $M --out "$TMP/srun" >"$TMP/srun.log" 2>&1
rc=$?; check "srun --mpi=pmix -n 2: exit 0 ($(tail -c 300 "$TMP/srun.log"))" test $rc -eq 0
check "srun: losses bitwise the single process's" cmp -s <(cut -d, -f1-4 "$TMP/single/metrics.jsonl") <(cut -d, -f1-4 "$TMP/srun/metrics.jsonl")
check "srun: final weights bitwise" cmp -s "$TMP/single/model.safetensors" "$TMP/srun/model.safetensors"

# the wrong plugin: Open MPI refuses by itself; MPICH would silently run two 1-rank jobs,
# which loom catches (the MPICH build is the one `make test` puts beside this one)
timeout 60 srun --mpi=none -n 2 --overcommit "$LOOM" train $M --out "$TMP/wrong" >/dev/null 2>"$TMP/wrong.err"
check "srun --mpi=none with Open MPI: refused" test $? -ne 0
MPICH_LOOM=${LOOM_MPICH:-$(dirname "$LOOM")-mpich/loom}
if [ -x "$MPICH_LOOM" ]; then
  timeout 60 srun --mpi=none -n 2 --overcommit "$MPICH_LOOM" train $M --out "$TMP/wrong2" >/dev/null 2>"$TMP/wrong2.err"
  check "srun --mpi=none with MPICH: refused" test $? -ne 0
  check "srun --mpi=none with MPICH: loom's hint names the plugin" \
    grep -q "MPI sees 1 process but SLURM_NTASKS=2: under srun use --mpi=pmix (Open MPI) or --mpi=pmi2 (MPICH)" "$TMP/wrong2.err"
fi

J=$(sbatch --parsable -n 2 --overcommit -o "$TMP/job.out" --wrap \
  "srun --mpi=pmix $LOOM train $(echo $M0) --steps 100000 --ckpt-dir $TMP/jobck --out $TMP/job; echo loom-exit=\$?")
for _ in $(seq 300); do [ -s "$TMP/job/metrics.jsonl" ] && break; sleep 0.1; done
scancel --signal=USR1 "$J"
waitjob "$J" 60
check "scancel --signal=USR1: the job ended" test $? -eq 0
check "scancel --signal=USR1: loom exited 3" grep -q "loom-exit=3" "$TMP/job.out"
check "scancel --signal=USR1: it says why" grep -q "User defined signal 1 received: stopped after step" "$TMP/job.out"
check "scancel --signal=USR1: a checkpoint was written" test -s "$TMP/jobck/latest"
finish slurm
