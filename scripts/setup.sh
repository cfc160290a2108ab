#!/usr/bin/env bash
# Installs what loom needs to build and test, from Debian packages, when missing.
# Run as root (or with sudo available). Idempotent: does nothing when all are present.
set -euo pipefail
pkgs=(build-essential make cmake libdnnl-dev python3 python3-torch libpcre2-dev unicode-data
      openmpi-bin libopenmpi-dev mpich libmpich-dev iproute2 iputils-ping
      slurmctld slurmd slurm-client munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
