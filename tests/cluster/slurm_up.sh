#!/usr/bin/env bash
# A single-node SLURM (Debian 12's 22.05) on this machine, for loom's tests: munged,
# slurmctld and slurmd started directly (no systemd), the node described by `slurmd -C`.
# Root only; the packages come from scripts/setup.sh. Stop with slurm_down.sh.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin
NODE=$(hostname -s)
getent hosts "$NODE" >/dev/null || echo "127.0.0.1 $NODE" >>/etc/hosts
source "$(dirname "$0")/slurm_common.sh"
start_munge
node_hardware
install -d -m 0755 /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm /run/slurm
cat >/etc/slurm/slurm.conf <<CONF
ClusterName=loomtest
SlurmctldHost=${NODE}(127.0.0.1)
$(slurm_conf_common)
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUs} Boards=${Boards} SocketsPerBoard=${SocketsPerBoard} CoresPerSocket=${CoresPerSocket} ThreadsPerCore=${ThreadsPerCore} RealMemory=$((RealMemory * 9 / 10)) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
rm -f /etc/slurm/cgroup.conf
/usr/sbin/slurmctld
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
/usr/sbin/slurmd
for _ in $(seq 150); do sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)' && break; sleep 0.2; done
sinfo -h -o %T | grep -qE '^(idle|mixed)'
