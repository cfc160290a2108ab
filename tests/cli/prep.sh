#!/usr/bin/env bash
# loom prep: the demo corpus encodes to exactly the reference tokens; the shards are
# byte-identical for 1, 2 and 4 threads; JSON-lines documents equal the same texts as
# files; standard input works; bad lines give file:line errors or counted skips.
source "$(dirname "$0")/lib.sh"
P="--tokenizer data/gpt2/r50k_base.tiktoken --quiet"
tokens() { for f in "$1"/val_*.bin "$1"/train_*.bin; do [ -e "$f" ] && tail -c +1025 "$f"; done; }

"$LOOM" prep data/tinyshakespeare.txt --out "$TMP/t1" --val-tokens 32768 --shard-tokens 100000 --threads 1 $P >/dev/null
check "prep exit 0" test $? -eq 0
check "EOT, then exactly tinyshakespeare.gpt2.u16" cmp -s <(tokens "$TMP/t1" | tail -c +3) data/tinyshakespeare.gpt2.u16
check "first token is <|endoftext|> (50256)" test "$(tokens "$TMP/t1" | head -c 2 | od -An -tu2 | tr -d ' ')" = 50256
check "val shard holds 32768 tokens" test "$(stat -c %s "$TMP/t1/val_000000.bin")" -eq $((1024 + 2 * 32768))
check "manifest counts" grep -q '"train_tokens": 305258' "$TMP/t1/manifest.json"
for t in 2 4; do
  "$LOOM" prep data/tinyshakespeare.txt --out "$TMP/t$t" --val-tokens 32768 --shard-tokens 100000 --threads $t $P >/dev/null
  check "threads $t: identical shards" diff -r "$TMP/t1" "$TMP/t$t"
done
cat data/tinyshakespeare.txt | "$LOOM" prep - --out "$TMP/stdin" --val-tokens 32768 --shard-tokens 100000 $P >/dev/null
check "standard input: identical tokens" cmp -s <(tokens "$TMP/t1") <(tokens "$TMP/stdin")

# JSON-lines vs the same documents as files
mkdir -p "$TMP/docs"
printf 'First line.\nSecond "quoted" line, caf\xc3\xa9 \xf0\x9f\x98\x80.\n' >"$TMP/docs/a.txt"
printf '  leading spaces and\ttabs\n\n\n' >"$TMP/docs/b.txt"
printf 'x' >"$TMP/docs/c.txt"
{
  echo '{"id": 1, "text": "First line.\nSecond \"quoted\" line, caf\u00e9 \ud83d\ude00.\n"}'
  echo ''
  echo '{"text": "  leading spaces and\ttabs\n\n\n", "meta": {"n": [1, 2]}}'
  echo '{"text": "x"}'
} >"$TMP/docs.jsonl"
"$LOOM" prep "$TMP/docs/a.txt" "$TMP/docs/b.txt" "$TMP/docs/c.txt" --out "$TMP/f" $P >/dev/null
"$LOOM" prep "$TMP/docs.jsonl" --out "$TMP/j" $P >/dev/null
"$LOOM" prep "$TMP/docs/*.txt" --out "$TMP/g" $P >/dev/null
check "a quoted glob expands to the files, sorted" cmp -s "$TMP/f/train_000000.bin" "$TMP/g/train_000000.bin"
check "JSON-lines documents equal the same texts as files" cmp -s "$TMP/f/train_000000.bin" "$TMP/j/train_000000.bin"
check "three documents" grep -q '"documents": 3' "$TMP/j/manifest.json"

{ echo '{"text": "ok"}'; echo '{"body": "no text field"}'; echo '{"text": "ok'; echo '[1]'; } >"$TMP/bad.jsonl"
expect_error "missing field" "bad.jsonl:2: no field \"text\"" "$LOOM" prep "$TMP/bad.jsonl" --out "$TMP/b" $P
"$LOOM" prep "$TMP/bad.jsonl" --out "$TMP/b2" --skip-bad $P >"$TMP/skip.out"
check "--skip-bad counts and reports" grep -q "skipped 3 bad JSON-lines line" "$TMP/skip.out"
check "--skip-bad manifest" grep -q '"skipped_lines": 3' "$TMP/b2/manifest.json"
{ echo '{"text": "ok"}'; echo '{"text": "broken'; } >"$TMP/broken.jsonl"
expect_error "broken JSON" "broken.jsonl:2: broken JSON" "$LOOM" prep "$TMP/broken.jsonl" --out "$TMP/b3" $P
expect_error "missing input" "$TMP/none.txt: cannot read" "$LOOM" prep "$TMP/none.txt" --out "$TMP/b4" $P
expect_error "no input" "no input given" "$LOOM" prep --out "$TMP/b5" $P
printf 'QQ== 0\n!!!! 1\n' >"$TMP/bad.tiktoken"
expect_error "malformed tokenizer" "bad.tiktoken:2" "$LOOM" prep data/tinyshakespeare.txt --out "$TMP/b6" --tokenizer "$TMP/bad.tiktoken" --quiet

# the shards train
"$LOOM" train --model tiny --n-layer 1 --n-embd 32 --n-head 2 --block-size 32 --data "$TMP/t1/train_*.bin" \
  --val-data "$TMP/t1/val_*.bin" --batch 2 --seq-len 16 --steps 2 --peak-gflops 400 --quiet --out "$TMP/tr"
check "prep output trains" test -s "$TMP/tr/model.safetensors"
finish prep
