#!/usr/bin/env bash
# A simulated multi-host cluster on one machine, for loom's tests: hosts are network
# namespaces ${PREFIX}h1..N with 198.18.0.i/24 (the benchmark range) on a veth into a
# bridge that lives in its own namespace ${PREFIX}sw; nothing touches the root
# namespace's network. Root only.
#   netcluster.sh up N [RATE] | down N        (RATE: tbf shaping, e.g. 1gbit)
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin
P=${LOOM_SIM_PREFIX:-loomsim}
NET=198.18.0
cmd=$1 N=${2:-2} RATE=${3:-}
shape() { ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$RATE" burst 1mb latency 20ms; }
case $cmd in
up)
  ip netns add "${P}sw"
  ip netns exec "${P}sw" ip link add br0 type bridge
  ip netns exec "${P}sw" ip link set br0 up
  for i in $(seq "$N"); do
    h=${P}h$i
    ip netns add "$h"
    ip netns exec "$h" ip link add eth0 type veth peer name "p$i"
    ip netns exec "$h" ip link set "p$i" netns "${P}sw"
    ip netns exec "${P}sw" ip link set "p$i" master br0 up
    ip netns exec "$h" ip addr add "$NET.$i/24" dev eth0
    ip netns exec "$h" ip link set eth0 up
    ip netns exec "$h" ip link set lo up
    [ -n "$RATE" ] && { shape "$h" eth0; shape "${P}sw" "p$i"; }
    mkdir -p "/etc/netns/$h"
    { echo "127.0.0.1 localhost"; for j in $(seq "$N"); do echo "$NET.$j ${P}h$j"; done; } >"/etc/netns/$h/hosts"
  done
  for i in $(seq "$N"); do # until the bridge has learnt every host
    for j in $(seq "$N"); do
      for _ in $(seq 50); do ip netns exec "${P}h$i" ping -c1 -W1 "$NET.$j" >/dev/null 2>&1 && break; sleep 0.1; done
    done
  done ;;
down)
  for i in $(seq "$N"); do ip netns del "${P}h$i" 2>/dev/null || true; rm -rf "/etc/netns/${P}h$i"; done
  ip netns del "${P}sw" 2>/dev/null || true ;;
*) echo "usage: $0 up|down N [RATE]" >&2; exit 2 ;;
esac
