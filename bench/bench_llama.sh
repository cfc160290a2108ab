#!/usr/bin/env bash
# Llama training throughput of loom vs Hugging Face transformers' LlamaForCausalLM, the
# same smollm-135m-shaped model (vocab 50257, to train on the bundled GPT-2 tokens), batch,
# sequence length and threads, fp32, measured in the same run, one process at a time.
#
# usage: bench/bench_llama.sh [BUILD_DIR=build]
# environment: BATCH=4 SEQ=256 STEPS=6 THREADS=2 ROUNDS=1
#   REFS="hf-pypi hf-debian"   hf-pypi: $LOOM_BENCH_VENV (newest PyPI torch + transformers;
#                              bench/setup_torch.sh, then pip install transformers);
#                              hf-debian: $LOOM_HF_VENV (transformers 4.45.2 over Debian's torch 1.13)
#   PEAK_GFLOPS=X              MFU denominator for all (default: median of 3 `loom info`)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
loom=$build/loom
B=${BATCH:-4} T=${SEQ:-256} steps=${STEPS:-6} threads=${THREADS:-2} rounds=${ROUNDS:-1}
refs=${REFS:-hf-pypi hf-debian}
data=data/tinyshakespeare.gpt2.u16
work=$(mktemp -d "${TMPDIR:-/tmp}/loom-bench-llama.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "bench_llama.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "${PEAK_GFLOPS:-}" ]; then
  PEAK_GFLOPS=$(for i in 1 2 3; do "$loom" info --threads "$threads" | sed -n "s/.* \([0-9.]*\) GFLOP\/s on $threads thread.*/\1/p"; done |
    sort -g | sed -n 2p)
fi
echo "peak fp32 FMA on $threads threads: $PEAK_GFLOPS GFLOP/s (the MFU denominator of every line)"
echo "model: smollm-135m shape, vocab 50257; batch $B x $T; $steps steps, median over steps 2..$steps; $threads threads"
for r in $(seq "$rounds"); do
  "$loom" train --model smollm-135m --vocab-size 50257 --data "$data" --data-format u16 --batch "$B" --seq-len "$T" \
    --steps "$steps" --threads "$threads" --peak-gflops "$PEAK_GFLOPS" --quiet --out "$work/loom" >/dev/null 2>&1
  /usr/bin/python3 -c "
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][1:]
print('loom', json.dumps({'tokens_per_s': statistics.median(r['tokens_per_s'] for r in rows),
                          'mfu': statistics.median(r['mfu'] for r in rows)}))" "$work/loom/metrics.jsonl" | tee -a "$work/res"
  for ref in $refs; do
    case $ref in
      hf-pypi) py=${LOOM_BENCH_VENV:-/opt/loom-bench/venv}/bin/python ;;
      hf-debian) py=${LOOM_HF_VENV:-/opt/loom-test/venv}/bin/python ;;
      *) echo "unknown ref $ref" >&2; continue ;;
    esac
    "$py" -c "import transformers" 2>/dev/null || { echo "$ref: no transformers in $py: skipped"; continue; }
    out=$("$py" bench/transformers_llama_train.py --data "$data" --batch "$B" --seq-len "$T" --steps "$steps" \
      --threads "$threads" --peak-gflops "$PEAK_GFLOPS" 2>/dev/null | tail -n 1)
    echo "$ref $out" | tee -a "$work/res"
  done
done
/usr/bin/python3 - "$work/res" <<'EOF'
import json, statistics, sys
by = {}
for line in open(sys.argv[1]):
    name, js = line.split(' ', 1)
    if js.strip().startswith('{'):
        by.setdefault(name, []).append(json.loads(js))
med = {k: (statistics.median(r['tokens_per_s'] for r in v), statistics.median(r['mfu'] for r in v)) for k, v in by.items()}
for k, (tps, mfu) in med.items():
    ratio = f", loom / {k} = {med['loom'][0] / tps:.2f}x" if k != 'loom' and 'loom' in med else ''
    print(f"{k:10s} {tps:8.1f} tokens/s  MFU {100 * mfu:5.1f}%{ratio}")
EOF
