#!/usr/bin/env bash
# Sampling tokens/s of `loom sample` with the KV cache and with a full forward pass per
# token, same model (a fresh `small` or `gpt2` init: speed does not depend on the
# weights), prompt, seed and threads, in the same run.
# usage: bench/bench_sample.sh [BUILD_DIR=build] [PRESET=small] [TOKENS=64]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
preset=${2:-small}
n=${3:-64}
echo "bench_sample.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), preset $preset, $n tokens, $(nproc) threads"
for mode in "" --no-kv-cache; do
  for i in 1 2 3; do
    "$build/loom" sample --model "$preset" --prompt "ROMEO:" --max-tokens "$n" --seed 1 $mode 2>&1 >/dev/null |
      grep tokens/s
  done
done | tee /dev/stderr >"${TMPDIR:-/tmp}/bench_sample.$$"
on=$(grep "KV cache on" "${TMPDIR:-/tmp}/bench_sample.$$" | sed -E 's/.*: ([0-9.]+) tokens\/s.*/\1/' | sort -g | sed -n 2p)
off=$(grep "KV cache off" "${TMPDIR:-/tmp}/bench_sample.$$" | sed -E 's/.*: ([0-9.]+) tokens\/s.*/\1/' | sort -g | sed -n 2p)
rm -f "${TMPDIR:-/tmp}/bench_sample.$$"
echo "median: $on tokens/s with the KV cache, $off without ($(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.1f", a / b}')x)"
