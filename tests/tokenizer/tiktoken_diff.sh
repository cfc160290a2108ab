#!/usr/bin/env bash
# loom's encoder against tiktoken itself: tiktoken_cases.py (run by the venv that has
# tiktoken: $LOOM_BENCH_VENV, default /opt/loom-bench/venv) writes cases, test_tokenizer
# checks them. Exit 77 (skip) when tiktoken is not installed there.
# usage: tests/tokenizer/tiktoken_diff.sh TEST_TOKENIZER_BINARY CASES_FILE
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${LOOM_BENCH_VENV:-/opt/loom-bench/venv}/bin/python
if [ ! -x "$py" ] || ! "$py" -c 'import tiktoken' 2>/dev/null; then
  echo "tiktoken_diff: tiktoken not installed in ${py%/bin/python} (bench/bench_tokenizer.sh --setup installs it); skipped"
  exit 77
fi
"$py" tests/tokenizer/tiktoken_cases.py "$2"
"$1" --tiktoken-cases "$2"
