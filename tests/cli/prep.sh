#!/usr/bin/env bash
# loom prep: the demo corpus encodes to exactly the reference tokens; the shards are
# byte-identical for 1, 2 and 4 threads; JSON-lines documents equal the same texts as
# files (one document too); standard input works; bad lines give file:line errors or
# counted skips; a tokenizer too big for uint16 is refused; --out is never mixed with
# an earlier run (refused unless --overwrite, then replaced whole) nor left half
# written by SIGINT or SIGTERM.
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

# one document in a JSON-lines file: its text is tokenized, not the line around it
printf 'hello' >"$TMP/hello.txt"
printf '{"text":"hello"}\n' >"$TMP/one.jsonl"
{ echo '{"text": "hello"}'; echo '{"body": "not this"}'; } >"$TMP/one_bad.jsonl"
"$LOOM" prep "$TMP/hello.txt" --out "$TMP/h" $P >/dev/null
"$LOOM" prep "$TMP/one.jsonl" --out "$TMP/h1" $P >/dev/null
check "one JSON-lines document equals the same text as a file" cmp -s "$TMP/h/train_000000.bin" "$TMP/h1/train_000000.bin"
"$LOOM" prep "$TMP/one_bad.jsonl" --out "$TMP/h2" --skip-bad $P >/dev/null
check "one good line of two (--skip-bad) equals the good text alone" cmp -s "$TMP/h/train_000000.bin" "$TMP/h2/train_000000.bin"

# a tokenizer of more ids than uint16 holds: 256 single bytes, then 3-byte tokens (4
# base64 characters each) up to rank 70256; with <|endoftext|> that is 70258 ids
{
  head -n 256 data/gpt2/r50k_base.tiktoken
  awk 'BEGIN { a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for (r = 256; r <= 70256; r++) { i = r
      s = substr(a, int(i / 262144) % 64 + 1, 1) substr(a, int(i / 4096) % 64 + 1, 1) substr(a, int(i / 64) % 64 + 1, 1) substr(a, i % 64 + 1, 1)
      print s, r } }'
} >"$TMP/big.tiktoken"
check "the big tokenizer has 70257 entries" test "$(wc -l <"$TMP/big.tiktoken")" -eq 70257
# ... gets uint32 shards (llm.c's 20240801 header, as for Llama 3): the end-of-text id
# 70257 survives whole, and train reads them
"$LOOM" prep "$TMP/hello.txt" --out "$TMP/b7" --tokenizer "$TMP/big.tiktoken" --quiet >/dev/null
check "a tokenizer past 65536 ids: prep succeeds" test $? -eq 0
/usr/bin/python3 - "$TMP/b7/train_000000.bin" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
magic, version, n = struct.unpack("<3i", b[:12])
ids = struct.unpack("<%dI" % n, b[1024:])
ok = (magic, version) == (20240801, 7) and len(b) == 1024 + 4 * n and ids[0] == 70257 and all(i < 256 for i in ids[1:])
sys.exit(0 if ok else 1)
PY
check "uint32 shard: header {20240801, 7, n}, the end-of-text id 70257 whole, the bytes of 'hello'" test $? -eq 0
grep -q '"format": "llm.c shards: 256 x int32 header {20240801, 7, count}, uint32 tokens"' "$TMP/b7/manifest.json"
check "the manifest names the uint32 format" test $? -eq 0
printf 'hello hello hello hello hello hello hello hello hello\n' >"$TMP/hello9.txt"
"$LOOM" prep "$TMP/hello9.txt" --out "$TMP/b8" --tokenizer "$TMP/big.tiktoken" --quiet >/dev/null &&
  "$LOOM" train --model tiny --vocab-size 70258 --data "$TMP/b8/train_*.bin" --steps 1 --batch 1 --seq-len 8 \
    --threads 1 --out "$TMP/b8run" --quiet >/dev/null 2>"$TMP/err"
rc=$?; check "train reads uint32 shards ($(head -c 200 "$TMP/err"))" test $rc -eq 0

# --out: a directory with files in it is refused, untouched; an empty one is used;
# --overwrite replaces the old output whole (no stale shards)
leftovers() { ls -d "$TMP"/*.tmp-* "$TMP"/*.old-* 2>/dev/null; }
cp -r "$TMP/h" "$TMP/h.copy"
expect_error "a full --out is refused" "--out: $TMP/h is not empty (it holds 2 files, e.g. manifest.json); pass --overwrite" \
  "$LOOM" prep "$TMP/docs/a.txt" --out "$TMP/h" $P
"$LOOM" prep "$TMP/docs/a.txt" --out "$TMP/h" $P >/dev/null 2>&1
check "a full --out exits 1" test $? -eq 1
check "a refused --out is untouched" diff -r "$TMP/h" "$TMP/h.copy"
mkdir "$TMP/empty"
"$LOOM" prep "$TMP/hello.txt" --out "$TMP/empty" $P >/dev/null
check "an empty --out is used" cmp -s "$TMP/h.copy/train_000000.bin" "$TMP/empty/train_000000.bin"
"$LOOM" prep data/tinyshakespeare.txt --out "$TMP/ow" --shard-tokens 100000 $P >/dev/null
check "the first run makes 4 shards" test "$(ls "$TMP/ow" | grep -c '^train_')" -eq 4
"$LOOM" prep "$TMP/hello.txt" --out "$TMP/ow" --overwrite $P >/dev/null
check "--overwrite exits 0" test $? -eq 0
check "--overwrite leaves exactly the new run's files" test "$(ls "$TMP/ow" | tr '\n' ' ')" = "manifest.json train_000000.bin "
check "--overwrite: the new shard" cmp -s "$TMP/h.copy/train_000000.bin" "$TMP/ow/train_000000.bin"
check "no temporary or old directories are left" test -z "$(leftovers)"

# SIGINT once a shard is written (the first input done, standard input still open):
# exit 130, one line, no --out and no temporary directory; SIGTERM while tokenizing a
# large file: 143, the same
mkfifo "$TMP/fifo"
"$LOOM" prep data/tinyshakespeare.txt - --out "$TMP/sig" --shard-tokens 100000 --threads 1 $P \
  <"$TMP/fifo" >/dev/null 2>"$TMP/sig.err" &
pid=$!
exec 3>"$TMP/fifo" # prep's standard input stays open until fd 3 closes
for _ in $(seq 200); do compgen -G "$TMP/sig*/train_000000.bin" >/dev/null && break; sleep 0.05; done # sig.tmp-PID/ (or sig/)
kill -INT $pid
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
exec 3>&- # an end of input, in case the signal was not taken
wait $pid
rc=$?
check "SIGINT exits 130 (got $rc)" test $rc -eq 130
check "SIGINT says so, in one line" test "$(cat "$TMP/sig.err")" = "loom prep: interrupted: nothing written to $TMP/sig"
check "SIGINT: no --out" test ! -e "$TMP/sig"
check "SIGINT: no temporary directory" test -z "$(leftovers)"
for _ in $(seq 40); do cat data/tinyshakespeare.txt; done >"$TMP/big.txt"
"$LOOM" prep "$TMP/big.txt" --out "$TMP/sig2" --threads 1 $P >/dev/null 2>"$TMP/sig2.err" &
pid=$!
for _ in $(seq 400); do compgen -G "$TMP/sig2.tmp-*" >/dev/null && break; sleep 0.01; done
kill -TERM $pid 2>/dev/null
wait $pid
rc=$?
check "SIGTERM while tokenizing exits 143 (got $rc; 0: it finished first)" test $rc -eq 143
check "SIGTERM says so, in one line" test "$(cat "$TMP/sig2.err")" = "loom prep: interrupted: nothing written to $TMP/sig2"
check "SIGTERM: no --out" test ! -e "$TMP/sig2"
check "SIGTERM: no temporary directory" test -z "$(leftovers)"
rm -f "$TMP/big.txt"

# the shards train
"$LOOM" train --model tiny --n-layer 1 --n-embd 32 --n-head 2 --block-size 32 --data "$TMP/t1/train_*.bin" \
  --val-data "$TMP/t1/val_*.bin" --batch 2 --seq-len 16 --steps 2 --peak-gflops 400 --quiet --out "$TMP/tr"
check "prep output trains" test -s "$TMP/tr/model.safetensors"
finish prep
