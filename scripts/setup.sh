#!/usr/bin/env bash
# Installs what loom needs to build and test, from Debian packages, when missing.
# Run as root (or with sudo available). Idempotent: does nothing when all are present.
set -euo pipefail
pkgs=(build-essential make cmake libdnnl-dev python3 python3-venv python3-torch libpcre2-dev unicode-data
      openmpi-bin libopenmpi-dev mpich libmpich-dev iproute2 iputils-ping
      slurmctld slurmd slurm-client munge pkg-config man-db bsdextrautils chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Hugging Face reference for the Llama tests: transformers from PyPI in a virtual
# environment over Debian's torch (python3-torch). Without PyPI the tests that need it
# say so and skip.
HF_VENV=${LOOM_HF_VENV:-/opt/loom-test/venv}
if ! "$HF_VENV/bin/python" -c "import transformers, safetensors" 2>/dev/null; then
  echo "setup: creating $HF_VENV (transformers 4.45.2 over Debian's torch)"
  mkdir -p "$(dirname "$HF_VENV")"
  /usr/bin/python3 -m venv --system-site-packages "$HF_VENV" &&
    "$HF_VENV/bin/pip" install -q --disable-pip-version-check "transformers==4.45.2" "safetensors>=0.4" ||
    echo "setup: could not install transformers into $HF_VENV (is PyPI reachable?): the Llama parity tests will skip"
fi
# TensorBoard's own readers, for the --tensorboard test
if [ -x "$HF_VENV/bin/python" ] && ! "$HF_VENV/bin/python" -c "import tensorboard" 2>/dev/null; then
  "$HF_VENV/bin/pip" install -q --disable-pip-version-check "tensorboard==2.18.0" ||
    echo "setup: could not install tensorboard into $HF_VENV (is PyPI reachable?): the tensorboard test will skip"
fi
