#!/usr/bin/env bash
# Where a loom training step spends its time, by phase, with Linux perf (sampling, no
# rebuild needed): runs `loom train` under `perf record`, keeps the samples between the
# first and the last training kernel (so start-up and weight init are left out), groups
# them by kernel, and shares the measured wall time per step out by sample counts.
#
# usage: bench/profile_train.sh [BUILD_DIR=build] [PRESET=small] [STEPS=4]
#   presets: small (B=8 T=256), gpt2 (B=4 T=256), tiny (B=4 T=64); THREADS=2
# Needs perf (apt-get install linux-perf) and permission to sample (root, or
# kernel.perf_event_paranoid <= 1). oneDNN writes /tmp/perf-PID.map for its JIT GEMM
# kernels, which is how their samples are recognised.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
preset=${2:-small}
steps=${3:-4}
threads=${THREADS:-2}
freq=${PERF_FREQ:-499}
command -v perf >/dev/null || { echo "profile_train.sh: perf not found (apt-get install linux-perf)" >&2; exit 1; }
case "$preset" in
  small) B=8; T=256 ;;
  gpt2) B=4; T=256 ;;
  tiny) B=4; T=64 ;;
  *) echo "profile_train.sh: unknown preset $preset" >&2; exit 2 ;;
esac
work=$(mktemp -d "${TMPDIR:-/tmp}/loom-profile.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "profile_train.sh: $preset B=$B T=$T, $steps steps, $threads threads, perf at $freq Hz"
perf record -q -F "$freq" -o "$work/perf.data" -- "$build/loom" train --model "$preset" \
  --data data/tinyshakespeare.gpt2.u16 --batch $B --seq-len $T --steps "$steps" --threads "$threads" \
  --out "$work/out" >"$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }
grep -E '^(step|done)' "$work/train.log"
perf script -i "$work/perf.data" -F tid,time,ip,sym,dso -G 2>/dev/null >"$work/samples.txt"

/usr/bin/python3 - "$work/samples.txt" "$work/out/metrics.jsonl" "$steps" <<'EOF'
import collections, json, re, statistics, sys
samples_path, metrics_path, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
pat = re.compile(r"^\s*(\d+)\s+([\d.]+):\s+\S+\s+(.*?)\s+\((.*)\)\s*$")
for line in open(samples_path, errors="replace"):
    m = pat.match(line)
    if m:
        rows.append((float(m.group(2)), m.group(3), m.group(4)))

def group(sym, dso):
    if "perf-" in dso or "libdnnl" in dso:
        return "GEMM (oneDNN sgemm, JIT)"
    for key, name in [("cpu_crossentropy", "cross-entropy (softmax + loss + dlogits)"),
                      ("cpu_attention_backward", "attention backward"),
                      ("cpu_attention_forward", "attention forward"),
                      ("cpu_gelu_backward", "GELU backward"), ("cpu_gelu_forward", "GELU forward"),
                      ("cpu_layernorm_backward", "layernorm backward"),
                      ("cpu_layernorm_forward", "layernorm forward"),
                      ("cpu_adamw", "AdamW"), ("cpu_sumsq", "grad-norm (sumsq)"),
                      ("colsum", "bias grads (column sums)"),
                      ("cpu_matmul_forward", "bias broadcast before GEMM"),
                      ("cpu_residual", "residual add"), ("cpu_encoder_backward", "encoder backward"),
                      ("cpu_encoder_forward", "encoder forward")]:
        if key in sym:
            return name
    if "libgomp" in dso:
        return "OpenMP runtime (barriers, spin)"
    if "kernel" in dso:
        return "kernel (page faults, syscalls)"
    if "libc.so" in dso:
        return "libc (memset/memcpy)"
    return "other: " + (sym if sym != "[unknown]" else dso.split("/")[-1])

def is_train(sym, dso):
    return "perf-" in dso or "libdnnl" in dso or sym.startswith("cpu_")

train_t = [t for t, s, d in rows if is_train(s, d)]
if not train_t:
    sys.exit("profile_train.sh: no training samples found")
t0, t1 = min(train_t), max(train_t)
win = [(s, d) for t, s, d in rows if t0 <= t <= t1]
metrics = [json.loads(l) for l in open(metrics_path) if l.strip()]
ms_all = [m["ms"] for m in metrics]
ms_step = (t1 - t0) * 1e3 / steps
counts = collections.Counter(group(s, d) for s, d in win)
total = sum(counts.values())
print(f"\nsampled window {t1 - t0:.2f} s = {ms_step:.0f} ms/step over {steps} steps "
      f"(loom's own step times: {', '.join(f'{m:.0f}' for m in ms_all)} ms; median {statistics.median(ms_all):.0f})")
print(f"{'phase':<44} {'% samples':>9} {'~ms/step':>9}")
for name, c in counts.most_common():
    if c / total < 0.002:
        continue
    print(f"{name:<44} {100 * c / total:8.1f}% {ms_step * c / total:9.0f}")
print("~ms/step shares the window's wall time per step out by sample share (all threads);"
      " step 1 (first touch of buffers) is included.")
EOF
