#!/usr/bin/env bash
# A multi-node SLURM on the simulated hosts of netcluster.sh: slurmctld in ${P}h1 and one
# slurmd per host ${P}h1..N, each started in its namespace through netns-rsh (so its
# hostname is the node name), with its own spool and TmpFS (PMIx puts per-job
# directories there; a shared one collides). Its config is /etc/slurm-sim/slurm.conf:
# clients run inside a host namespace with SLURM_CONF pointing there. Root only.
#   slurm_sim_up.sh N        (after netcluster.sh up N; stop with slurm_sim_down.sh)
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin
P=${LOOM_SIM_PREFIX:-loomsim}
N=${1:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/slurm_common.sh"
start_munge
node_hardware
S=/var/lib/slurm-sim
install -d -m 0755 /etc/slurm-sim $S/ctld /var/log/slurm-sim /run/slurm-sim
for i in $(seq "$N"); do install -d -m 0755 "$S/${P}h$i"; install -d -m 1777 "$S/tmp/${P}h$i"; done
cat >/etc/slurm-sim/slurm.conf <<CONF
ClusterName=loomsim
SlurmctldHost=${P}h1(198.18.0.1)
$(slurm_conf_common)
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/%n
TmpFS=$S/tmp/%n
SlurmctldPidFile=/run/slurm-sim/slurmctld.pid
SlurmdPidFile=/run/slurm-sim/slurmd.%n.pid
SlurmctldLogFile=/var/log/slurm-sim/slurmctld.log
SlurmdLogFile=/var/log/slurm-sim/slurmd.%n.log
SlurmdTimeout=30
NodeName=${P}h[1-$N] NodeAddr=198.18.0.[1-$N] CPUs=$CPUs Boards=$Boards SocketsPerBoard=$SocketsPerBoard CoresPerSocket=$CoresPerSocket ThreadsPerCore=$ThreadsPerCore RealMemory=1000 State=UNKNOWN
PartitionName=sim Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=/etc/slurm-sim/slurm.conf
in_h1() { "$HERE/netns-rsh" "${P}h1" "SLURM_CONF=$SLURM_CONF $*"; }
"$HERE/netns-rsh" "${P}h1" "SLURM_CONF=$SLURM_CONF /usr/sbin/slurmctld"
for _ in $(seq 100); do in_h1 scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
for i in $(seq "$N"); do "$HERE/netns-rsh" "${P}h$i" "SLURM_CONF=$SLURM_CONF /usr/sbin/slurmd -N ${P}h$i"; done
for _ in $(seq 150); do
  [ "$(in_h1 sinfo -h -N -o %T 2>/dev/null | grep -cE '^(idle|mixed)')" = "$N" ] && break
  sleep 0.2
done
in_h1 sinfo -N
[ "$(in_h1 sinfo -h -N -o %T | grep -cE '^(idle|mixed)')" = "$N" ]
