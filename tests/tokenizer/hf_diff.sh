#!/usr/bin/env bash
# loom's tokenizer.json loader against Hugging Face tokenizers itself: hf_cases.py (run
# by the venv that has tokenizers: $LOOM_HF_VENV, default /opt/loom-test/venv) trains
# tokenizer.json files and writes the ids tokenizers gives; test_tokenizer --hf-cases
# requires the same ids, pieces and decodes. Then `loom prep` and `loom sample` take
# tokenizer.json files: GPT-2's gives the same shards and text as the rank file, the
# others the corpus ids tokenizers gave, and a broken file is one line. The cases are
# kept in <build>/hf_cases and made again when hf_cases.py is newer. Exit 77 (skip)
# when tokenizers is not installed there.
# usage: LOOM=build/loom tests/tokenizer/hf_diff.sh (ctest runs it so)
source "$(dirname "$0")/../cli/lib.sh"
cd "$(dirname "$0")/../.."
py=${LOOM_HF_VENV:-/opt/loom-test/venv}/bin/python
if [ ! -x "$py" ] || ! "$py" -c 'import tokenizers, numpy' 2>/dev/null; then
  echo "hf_diff: tokenizers (and numpy) not installed in ${py%/bin/python}; skipped"
  exit 77
fi
build=$(cd "$(dirname "$LOOM")" && pwd)
dir=$build/hf_cases
if [ ! -f "$dir/list.txt" ] || [ tests/tokenizer/hf_cases.py -nt "$dir/list.txt" ]; then
  rm -rf "$dir" "$dir.tmp"
  "$py" tests/tokenizer/hf_cases.py "$dir.tmp" || exit 1
  mv "$dir.tmp" "$dir"
fi
"$build/tests/test_tokenizer" --hf-cases "$dir"
check "test_tokenizer --hf-cases" test $? -eq 0

tokens() { for f in "$1"/val_*.bin "$1"/train_*.bin; do [ -e "$f" ] && tail -c +1025 "$f"; done; }
P="data/tinyshakespeare.txt --quiet --val-tokens 10000"
"$LOOM" prep $P --out "$TMP/tk" --tokenizer data/gpt2/r50k_base.tiktoken >/dev/null
"$LOOM" prep $P --out "$TMP/js" --tokenizer "$dir/gpt2.json" >/dev/null
check "prep: GPT-2's tokenizer.json gives the rank file's shards" cmp -s <(tokens "$TMP/tk") <(tokens "$TMP/js")
for name in bytelevel llama3 smollm digits_runs; do
  "$LOOM" prep $P --out "$TMP/$name" --tokenizer "$dir/$name.json" --threads 2 >/dev/null
  check "prep: $name.json gives tokenizers' ids" cmp -s <(tokens "$TMP/$name") "$dir/corpus.$name.u16"
done
S="--model tiny --n-layer 2 --n-embd 64 --n-head 4 --block-size 64 --max-tokens 16 --seed 3 --prompt ROMEO:"
"$LOOM" sample $S >"$TMP/s1" 2>/dev/null
"$LOOM" sample $S --tokenizer "$dir/gpt2.json" >"$TMP/s2" 2>/dev/null
check "sample: GPT-2's tokenizer.json gives the rank file's text" cmp -s "$TMP/s1" "$TMP/s2"
check "sample: it starts with the prompt" grep -q "^ROMEO:" "$TMP/s2"
sed 's/"type": "BPE"/"type": "Unigram"/' "$dir/smollm.json" >"$TMP/bad.json"
expect_error "prep: a tokenizer.json loom does not read" "bad.json:" "$LOOM" prep $P --out "$TMP/bad" \
  --tokenizer "$TMP/bad.json"
expect_error "sample: the same" "model.type \"Unigram\" is not supported" "$LOOM" sample $S --tokenizer "$TMP/bad.json"
finish hf_diff
