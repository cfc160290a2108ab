#!/usr/bin/env bash
# Runs every benchmark, one at a time, and tees each one's output into bench/out/*.txt.
# usage: bench/run_all.sh [BUILD_DIR=build]
# Builds BUILD_DIR's loom and bench_gemm first. References (OpenBLAS, Debian torch,
# PyPI torch) come from bench/setup_torch.sh; whatever is missing is skipped with a note.
# WAIT_QUIET=S (default 120): before each benchmark, wait up to S seconds for the CPUs
# to go idle (other work on a 2-core machine skews every number); it then runs anyway.
# GEMM_ARGS="..." bench_gemm flags (default "--openblas-coretype SkylakeX": also times a copy of
# OpenBLAS loaded with OPENBLAS_CORETYPE=SkylakeX beside the one as installed; GEMM_ARGS= for none).
# Then, if perf is installed (PROFILE=0 to skip), bench/profile_train.sh for small and gpt2.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=bench/out
mkdir -p "$out"

cpu_busy_pct() { # percent of all CPU time busy over 2 s, from /proc/stat
  local a b
  a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}
wait_quiet() {
  local limit=${WAIT_QUIET:-120} waited=0 busy
  while :; do
    busy=$(cpu_busy_pct)
    if [ "$busy" -le 15 ]; then echo "run_all.sh: CPUs ${busy}% busy; starting $1"; return; fi
    if [ "$waited" -ge "$limit" ]; then
      echo "run_all.sh: CPUs still ${busy}% busy after ${waited}s; starting $1 anyway (numbers will be noisy)"
      return
    fi
    sleep 8; waited=$(( waited + 10 ))
  done
}

cmake -S . -B "$build" >/dev/null && cmake --build "$build" -j2 --target loom bench_gemm bench_tokenizer >/dev/null \
  || { echo "run_all.sh: build failed" >&2; exit 1; }

stamp=$(date -u '+%Y-%m-%d %H:%M UTC')
{ echo "run_all.sh: $stamp"; "$build/loom" info; } | tee "$out/info.txt"

wait_quiet bench_gemm
"$build/bench/bench_gemm" ${GEMM_ARGS---openblas-coretype SkylakeX} 2>&1 | tee "$out/bench_gemm.txt"
wait_quiet bench_train.sh
bench/bench_train.sh "$build" 2>&1 | tee "$out/bench_train.txt"
# PROFILE=0 skips the per-phase perf profile of loom's training step (default: on when perf exists)
if [ "${PROFILE:-1}" = 1 ] && command -v perf >/dev/null; then
  for p in small gpt2; do
    wait_quiet "profile_train.sh $p"
    bench/profile_train.sh "$build" $p 4 2>&1 | tee "$out/profile_$p.txt"
  done
fi
for b in tokenizer prep sample ckpt; do
  wait_quiet "bench_$b.sh"
  bench/bench_$b.sh "$build" 2>&1 | tee "$out/bench_$b.txt"
done
echo "run_all.sh: outputs in $out/ (info.txt, bench_*.txt, profile_*.txt)"
