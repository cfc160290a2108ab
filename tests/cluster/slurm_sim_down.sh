#!/usr/bin/env bash
# Stops the daemons of slurm_sim_up.sh (by their pid files) and removes its state;
# munged is left running (the single-node SLURM may share it).
for pf in /run/slurm-sim/slurmd.*.pid /run/slurm-sim/slurmctld.pid; do
  [ -s "$pf" ] || continue
  pid=$(cat "$pf")
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pf"
done
rm -rf /var/lib/slurm-sim
