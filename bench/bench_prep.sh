#!/usr/bin/env bash
# End-to-end preprocessing MB/s: `loom prep` vs the usual Python way (tiktoken's
# encode_ordinary_batch, bench/prep_tiktoken.py) on the same JSON-lines corpus (the
# demo text cut into ~2 KB documents and repeated to ~22 MB), same threads, same run.
# The two outputs are compared token for token. Medians of 3.
# usage: bench/bench_prep.sh [BUILD_DIR=build]   (tiktoken from /opt/loom-bench/venv)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
py=${LOOM_BENCH_VENV:-/opt/loom-bench/venv}/bin/python
work=$(mktemp -d /tmp/loom-bench-prep.XXXXXX)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$work/corpus.jsonl" <<'PY'
import json, sys
text = open("data/tinyshakespeare.txt", encoding="utf-8").read()
docs = [text[i:i + 2000] for i in range(0, len(text), 2000)]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for r in range(20):
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
PY
echo "bench_prep.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), corpus $(du -m "$work/corpus.jsonl" | cut -f1) MB JSON-lines"
for threads in 1 2; do
  for i in 1 2 3; do
    rm -rf "$work/l" "$work/p" && mkdir -p "$work/p"
    "$build/loom" prep "$work/corpus.jsonl" --out "$work/l" --threads $threads --quiet | sed "s/^/loom threads=$threads: /"
    [ -x "$py" ] && "$py" bench/prep_tiktoken.py data/gpt2/r50k_base.tiktoken "$work/p" $threads "$work/corpus.jsonl" |
      sed "s/^/python threads=$threads: /"
  done
  if [ -x "$py" ]; then
    cmp -s "$work/l/train_000000.bin" "$work/p/train_000000.bin" && echo "threads=$threads: outputs identical" ||
      echo "threads=$threads: OUTPUTS DIFFER"
  fi
done | tee "$work/log"
for who in loom python; do
  for threads in 1 2; do
    m=$(grep "^$who threads=$threads" "$work/log" | sed -E 's/.*\(([0-9.]+) MB\/s\).*/\1/' | sort -g | sed -n 2p)
    [ -n "$m" ] && echo "median $who, $threads thread(s): $m MB/s"
  done
done
