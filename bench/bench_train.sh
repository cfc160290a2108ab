#!/usr/bin/env bash
# Training throughput of loom vs PyTorch on the same GPT-2, batch, sequence length and
# thread count, measured in the same run, one process at a time (never concurrently).
#
# usage: bench/bench_train.sh [BUILD_DIR=build]
# environment (all optional):
#   PRESETS="small gpt2"   presets: small = 6L/384C/6H, B=8 T=256; gpt2 = 12L/768C/12H, B=4 T=256
#   STEPS_small=10 STEPS_gpt2=8   optimizer steps per run; the median is over steps 2..N
#   ROUNDS=1               repeat the whole loom,torch,... sequence; medians pool all rounds
#   THREADS=2              OpenMP / torch threads
#   IMPLS="loom torch-debian-skx torch-debian torch-pypi"   what to run, in this order:
#       loom              $BUILD_DIR/loom train (its metrics.jsonl)
#       loom-base         another loom binary, the same way: $LOOM_BASE, or else built here from
#                         git revision $LOOM_BASE_REV (default 8789770, main before the model-layer
#                         redesign), so that a refactoring's speed is compared in the same run
#       torch-debian-skx  /usr/bin/python3 (Debian python3-torch 1.13, OpenBLAS) with OPENBLAS_CORETYPE=SkylakeX
#       torch-debian      the same with OPENBLAS_CORETYPE unset (OpenBLAS as installed)
#       torch-pypi        $LOOM_BENCH_VENV/bin/python (newest PyPI torch; bench/setup_torch.sh)
#   LOOM_BENCH_VENV=/opt/loom-bench/venv   DATA=data/tinyshakespeare.gpt2.u16
#   PEAK_GFLOPS=X          MFU denominator for every impl (default: median of 3 `loom info`)
# MFU = FLOPs/token * tokens/s / peak, FLOPs/token = 6 * params-without-wpe + 12 * L * T * C
# for every impl, against the same measured fp32 FMA peak on THREADS threads.
set -uo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
loom=$build/loom
threads=${THREADS:-2}
presets=${PRESETS:-small gpt2}
rounds=${ROUNDS:-1}
impls=${IMPLS:-loom torch-debian-skx torch-debian torch-pypi}
venv=${LOOM_BENCH_VENV:-/opt/loom-bench/venv}
data=${DATA:-data/tinyshakespeare.gpt2.u16}
py=/usr/bin/python3
work=$(mktemp -d "${TMPDIR:-/tmp}/loom-bench-train.XXXXXX")
trap 'rm -rf "$work"' EXIT
results=$work/results.jsonl
: >"$results"

[ -x "$loom" ] || { echo "bench_train.sh: $loom not found; build first (cmake -S . -B $build && cmake --build $build -j2)" >&2; exit 1; }
[ -f "$data" ] || { echo "bench_train.sh: $data not found" >&2; exit 1; }

echo "bench_train.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$loom" info --threads "$threads" | sed 's/^/  loom info: /'

if [ -z "${PEAK_GFLOPS:-}" ]; then
  peaks=()
  for i in 1 2 3; do
    p=$("$loom" info --threads "$threads" | sed -n "s/.* \([0-9.]*\) GFLOP\/s on $threads thread.*/\1/p")
    [ -n "$p" ] && peaks+=("$p")
  done
  [ ${#peaks[@]} -gt 0 ] || { echo "bench_train.sh: could not read the peak from loom info" >&2; exit 1; }
  PEAK_GFLOPS=$(printf '%s\n' "${peaks[@]}" | sort -g | sed -n "$(( (${#peaks[@]} + 1) / 2 ))p")
  echo "peak fp32 FMA on $threads threads: $PEAK_GFLOPS GFLOP/s (median of ${peaks[*]} from loom info; MFU denominator for all)"
else
  echo "peak fp32 FMA on $threads threads: $PEAK_GFLOPS GFLOP/s (PEAK_GFLOPS; MFU denominator for all)"
fi

busy_ticks() { # all CPUs' busy time (user nice system irq softirq steal), in clock ticks
  local a; a=($(head -1 /proc/stat)); echo $(( a[1] + a[2] + a[3] + a[6] + a[7] + a[8] ))
}
clk_tck=$(getconf CLK_TCK)
ncpu=$(nproc)
# measured CMD...: runs CMD, then sets $other_pct: CPU time that other processes used while
# it ran, in % of all CPUs (from /proc/stat minus CMD's own user+sys time).
measured() {
  local b0 t0 b1 t1 rc cpu
  b0=$(busy_ticks); t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$work/time.txt" "$@"; rc=$?
  b1=$(busy_ticks); t1=$(date +%s.%N)
  cpu=$(awk '{ s = $1 + $2 } END { print s + 0 }' "$work/time.txt" 2>/dev/null)
  other_pct=$(awk -v b="$((b1 - b0))" -v hz="$clk_tck" -v c="${cpu:-0}" -v w0="$t0" -v w1="$t1" -v n="$ncpu" \
    'BEGIN { o = 100 * (b / hz - c) / ((w1 - w0) * n); if (o < 0) o = 0; printf "%.0f", o }')
  return $rc
}

if [[ " $impls " == *" loom-base "* && -z "${LOOM_BASE:-}" ]]; then
  rev=${LOOM_BASE_REV:-8789770}
  echo "building loom at $rev for loom-base ..."
  if git worktree add -f --detach "$work/base" "$rev" >/dev/null 2>&1 &&
     cmake -S "$work/base" -B "$work/base/build" -DCMAKE_BUILD_TYPE=Release >/dev/null 2>&1 &&
     cmake --build "$work/base/build" -j2 --target loom >/dev/null 2>&1; then
    LOOM_BASE=$work/base/build/loom
  else
    echo "note: could not build loom at $rev; loom-base skipped"
  fi
  trap 'git worktree remove --force "$work/base" >/dev/null 2>&1; rm -rf "$work"' EXIT
fi

have_impl() {
  case "$1" in
    loom) return 0 ;;
    loom-base) [ -n "${LOOM_BASE:-}" ] && [ -x "$LOOM_BASE" ] ;;
    torch-debian|torch-debian-skx) "$py" -c 'import torch' >/dev/null 2>&1 ;;
    torch-pypi) [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import torch' >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}
for impl in $impls; do
  have_impl "$impl" || echo "note: $impl not available (run bench/setup_torch.sh); skipped"
done

run_loom() { # preset B T steps round [impl]
  local impl=${6:-loom} exe=$loom
  [ "$impl" = loom-base ] && exe=$LOOM_BASE
  local out=$work/$impl-$1-$5
  echo "--- $impl $1 (B=$2 T=$3, $4 steps, $threads threads, round $5)"
  measured "$exe" train --model "$1" --data "$data" --batch "$2" --seq-len "$3" --steps "$4" \
    --threads "$threads" --peak-gflops "$PEAK_GFLOPS" --out "$out" >"$out.log" 2>&1
  local rc=$?
  echo "  (other processes used ${other_pct}% of the CPUs meanwhile)"
  sed 's/^/  /' "$out.log" | grep -E '^  (step|done|loom|model|train)' | head -20
  [ $rc -eq 0 ] || { echo "  loom train failed (rc $rc)"; tail -5 "$out.log"; return 0; }
  "$py" - "$out/metrics.jsonl" "$1" "$PEAK_GFLOPS" "$2" "$3" "$5" "$other_pct" "$impl" >>"$results" <<'EOF'
import json, statistics, sys
path, preset, peak, B, T, rnd = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
other, impl = float(sys.argv[7]), sys.argv[8]
rows = [json.loads(l) for l in open(path) if l.strip()]
timed = [r for r in rows if r["step"] >= 2] or rows
tok = [r["tokens_per_s"] for r in timed]
# loom's mfu field = flops_per_token * tokens_per_s / peak, so flops/token = mfu * peak / tokens_per_s
fpt = statistics.median(r["mfu"] * peak * 1e9 / r["tokens_per_s"] for r in rows)
print(json.dumps({"preset": preset, "impl": impl, "round": rnd, "tokens_per_s_steps": tok,
                  "ms": [r["ms"] for r in rows], "flops_per_token": fpt, "other_pct": other}))
EOF
  rm -rf "$out"
}

run_torch() { # impl preset B T steps round
  local impl=$1 pyexe=$py label env=()
  case "$impl" in
    torch-debian-skx) env=(OPENBLAS_CORETYPE=SkylakeX); label="torch-debian (OPENBLAS_CORETYPE=SkylakeX)" ;;
    torch-debian) env=(-u OPENBLAS_CORETYPE); label="torch-debian (OPENBLAS_CORETYPE unset)" ;;
    torch-pypi) pyexe=$venv/bin/python; env=(-u OPENBLAS_CORETYPE); label="torch-pypi" ;;
  esac
  local log=$work/$impl-$2-$6.log
  echo "--- $label $2 (B=$3 T=$4, $5 steps, $threads threads, round $6)"
  measured env "${env[@]}" OMP_NUM_THREADS="$threads" "$pyexe" bench/torch_train.py --model "$2" --batch "$3" \
    --seq-len "$4" --steps "$5" --threads "$threads" --data "$data" --peak-gflops "$PEAK_GFLOPS" \
    --label "$impl" >"$log" 2>&1
  local rc=$?
  echo "  (other processes used ${other_pct}% of the CPUs meanwhile)"
  grep -v '^{' "$log" | grep -v -i warn | sed 's/^/  /' | head -20
  [ $rc -eq 0 ] || { echo "  $impl failed (rc $rc)"; tail -5 "$log"; return 0; }
  "$py" - "$log" "$2" "$3" "$4" "$6" "$impl" "$other_pct" >>"$results" <<'EOF'
import json, sys
path, preset, B, T, rnd, impl = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
other = float(sys.argv[7])
r = json.loads([l for l in open(path) if l.startswith("{")][-1])
ms = r["ms"]
timed = ms[1:] if len(ms) > 1 else ms
print(json.dumps({"preset": preset, "impl": impl, "round": rnd, "torch": r["torch"], "blas": r["blas"],
                  "tokens_per_s_steps": [B * T / (m / 1e3) for m in timed], "ms": ms,
                  "flops_per_token": r["flops_per_token"], "other_pct": other}))
EOF
}

for preset in $presets; do
  case "$preset" in
    small) B=8; T=256; steps=${STEPS_small:-10} ;;
    gpt2) B=4; T=256; steps=${STEPS_gpt2:-8} ;;
    tiny) B=4; T=64; steps=${STEPS_tiny:-3} ;; # smoke test only
    *) echo "bench_train.sh: unknown preset $preset (small, gpt2)" >&2; exit 2 ;;
  esac
  for ((r = 1; r <= rounds; r++)); do
    for impl in $impls; do
      have_impl "$impl" || continue
      if [ "$impl" = loom ] || [ "$impl" = loom-base ]; then run_loom "$preset" $B $T "$steps" $r "$impl"
      else run_torch "$impl" "$preset" $B $T "$steps" $r; fi
    done
  done
done

echo
echo "bench_train.sh: all runs took ${SECONDS}s"
echo "== training throughput, $threads threads, medians over steps 2..N (pooled over $rounds round(s)); load average now $(cut -d' ' -f1-3 /proc/loadavg) =="
"$py" - "$results" "$PEAK_GFLOPS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = float(sys.argv[2]) * 1e9
order, agg = [], {}
for r in rows:
    k = (r["preset"], r["impl"])
    if k not in agg:
        order.append(k)
        agg[k] = {"tok": [], "fpt": r["flops_per_token"], "torch": r.get("torch", ""), "blas": r.get("blas", ""), "other": 0.0}
    agg[k]["tok"] += r["tokens_per_s_steps"]
    agg[k]["other"] = max(agg[k]["other"], r.get("other_pct", 0.0))
print(f"{'preset':<7} {'impl':<17} {'version':<22} {'tokens/s':>9} {'(min-max)':>15} {'MFU %':>6} {'GFLOP/tok':>9} {'loom/impl':>9} {'other':>5}")
for (preset, impl) in order:
    a = agg[(preset, impl)]
    med = statistics.median(a["tok"])
    loom = agg.get((preset, "loom"))
    ratio = statistics.median(loom["tok"]) / med if loom else float("nan")
    ver = impl if impl.startswith("loom") else f"torch {a['torch']} {a['blas']}"
    print(f"{preset:<7} {impl:<17} {ver:<22} {med:9.0f} {min(a['tok']):7.0f}-{max(a['tok']):<7.0f} "
          f"{100 * a['fpt'] * med / peak:6.1f} {a['fpt'] / 1e9:9.3f} {ratio:8.2f}x {a['other']:4.0f}%")
print("loom/impl = loom tokens/s / impl tokens/s (>1: loom faster; loom-base: an earlier loom). torch-debian* = Debian python3-torch on "
      "OpenBLAS 0.3.21; torch-pypi = newest PyPI wheel (MKL + oneDNN).\n"
      "other = CPU time other processes used during that run (max over rounds), % of all CPUs; "
      "above ~5% that row is disturbed.")
EOF
