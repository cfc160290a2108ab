#!/usr/bin/env bash
# MB/s of loom's tokenizer.json encoder beside Hugging Face tokenizers, on the same
# files and texts in the same run: the tokenizer.json files that the tokenizer_vs_hf
# test trains (BUILD/hf_cases: GPT-2's, a Llama-3-style and a SmolLM-style one; run
# `ctest -R tokenizer_vs_hf` once first), tinyshakespeare and a mixed-Unicode text.
# loom: bench_tokenizer, 1 thread (loom_tokenizer_encode) and 2 threads
# (loom_tokenizer_encode_parallel). tokenizers: encode_batch over the text's lines with
# RAYON_NUM_THREADS=1 and 2 (its parallel path; one call on the whole 1-6 MB text is
# slower still), and once encode of the whole text on 1 thread.
# usage: bench/bench_tokenizer_hf.sh [BUILD_DIR=build]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
py=${LOOM_HF_VENV:-/opt/loom-test/venv}/bin/python
cases=$build/hf_cases
[ -f "$cases/gpt2.json" ] || { echo "no $cases/gpt2.json: run (cd $build && ctest -R tokenizer_vs_hf) first" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/loom-bench-tok.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$build/bench/bench_tokenizer" --ranks "$cases/gpt2.json" --text data/tinyshakespeare.txt --trials 1 \
  --write-mixed "$work/mixed.txt" >/dev/null
echo "bench_tokenizer_hf.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs"
for tj in gpt2 llama3 smollm; do
  echo "== $tj.json"
  "$build/bench/bench_tokenizer" --ranks "$cases/$tj.json" --text data/tinyshakespeare.txt --trials 5 | grep '^loom'
  for threads in 1 2; do
    RAYON_NUM_THREADS=$threads "$py" - "$cases/$tj.json" data/tinyshakespeare.txt "$work/mixed.txt" "$threads" <<'EOF'
import statistics, sys, time
from tokenizers import Tokenizer
import tokenizers
tok = Tokenizer.from_file(sys.argv[1])
threads = int(sys.argv[4])
for name, path in (("tinyshakespeare", sys.argv[2]), ("mixed-unicode", sys.argv[3])):
    text = open(path, encoding="utf-8").read()
    lines = text.splitlines(keepends=True)
    n = len(text.encode("utf-8"))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        ids = sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False))
        times.append(time.perf_counter() - t0)
    mbs = [n / t / 1e6 for t in times]
    if threads == 1 and name == "tinyshakespeare":
        t0 = time.perf_counter()
        tok.encode(text, add_special_tokens=False)
        print(f"tokenizers {tokenizers.__version__} {name:15s} 1 thread  (one encode call)  {n / (time.perf_counter() - t0) / 1e6:7.2f} MB/s")
    print(f"tokenizers {tokenizers.__version__} {name:15s} {threads} thread{'s' if threads > 1 else ' '} (batch of lines)  "
          f"{statistics.median(mbs):7.2f} MB/s  (median of 5, min {min(mbs):.2f}, max {max(mbs):.2f})  {n} bytes -> {ids} tokens")
EOF
  done
done
