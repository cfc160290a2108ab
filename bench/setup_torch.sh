#!/usr/bin/env bash
# Installs the references that bench/bench_gemm.c and bench/bench_train.sh compare loom with.
# Idempotent: each step is skipped when its result is already there.
#   1. Debian's OpenBLAS (libopenblas-dev, 0.3.21): bench_gemm dlopens libopenblas.so.0,
#      and Debian's python3-torch 1.13 reaches BLAS through the libblas.so.3 alternative,
#      which OpenBLAS takes over (without it, torch 1.13 runs on netlib's reference BLAS).
#   2. Debian's python3-torch (1.13) for /usr/bin/python3.
#   3. The newest torch on PyPI into a venv ($LOOM_BENCH_VENV, default /opt/loom-bench/venv).
#      The default Linux wheel pulls in the CUDA libraries (several GB); loom only uses its CPU side.
# Usage: bench/setup_torch.sh [--no-apt] [--no-pip]
set -uo pipefail

venv=${LOOM_BENCH_VENV:-/opt/loom-bench/venv}
do_apt=1
do_pip=1
for a in "$@"; do
  case "$a" in
    --no-apt) do_apt=0 ;;
    --no-pip) do_pip=0 ;;
    *) echo "usage: $0 [--no-apt] [--no-pip]" >&2; exit 2 ;;
  esac
done

sudo_=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo_="sudo"

if [ $do_apt = 1 ]; then
  need=()
  for p in libopenblas-dev python3-torch python3-venv; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup_torch.sh: apt-get install ${need[*]}"
    $sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}" \
      || echo "setup_torch.sh: apt-get install failed (continuing without: ${need[*]})" >&2
  else
    echo "setup_torch.sh: apt packages present (libopenblas-dev, python3-torch, python3-venv)"
  fi
fi

if [ $do_pip = 1 ]; then
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
    echo "setup_torch.sh: $venv has torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
  else
    [ -x "$venv/bin/python" ] || { mkdir -p "$(dirname "$venv")" && /usr/bin/python3 -m venv "$venv"; } \
      || { echo "setup_torch.sh: could not create $venv" >&2; exit 1; }
    echo "setup_torch.sh: pip install torch into $venv (large download)"
    if "$venv/bin/pip" install --no-input --progress-bar off torch numpy; then
      echo "setup_torch.sh: installed torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
    else
      echo "setup_torch.sh: pip install torch failed; bench_train.sh will use Debian's torch only" >&2
      exit 1
    fi
  fi
fi
