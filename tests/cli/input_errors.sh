#!/usr/bin/env bash
# Bad input files and values: one error line that names the file (or flag) and the
# problem: a directory given as a file, a tensor of the wrong shape, a head count that is
# nowhere, a malformed config.json, a garbage tokenizer (shown escaped and short), more
# new tokens than the block size holds. Never a crash.
source "$(dirname "$0")/lib.sh"
DATA=data/tinyshakespeare_val.bin
"$LOOM" train --model tiny --n-layer 1 --n-embd 32 --n-head 2 --block-size 32 --batch 2 --seq-len 16 --steps 1 \
  --quiet --data $DATA --out "$TMP/m"
M=$TMP/m/model.safetensors
check "train a tiny model" test -f "$M"
EVAL="--data $DATA --batch 2 --seq-len 16 --max-batches 1"

# rewrite IN OUT [NAME=D1,D2,...]... [-KEY]...: a copy of a safetensors file with the named
# tensors reshaped (zero data; NAME= is a scalar) and the metadata keys dropped.
rewrite() {
  python3 - "$@" <<'EOF'
import json, struct, sys
src, dst, *edits = sys.argv[1:]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
head = json.loads(b[8:8 + n])
meta = head.pop("__metadata__", {})
shapes = {}
for e in edits:
    if e.startswith("-"):
        meta.pop(e[1:], None)
    else:
        k, v = e.split("=")
        shapes[k] = [int(x) for x in v.split(",")] if v else []
out, data = {"__metadata__": meta}, b""
for k, t in head.items():
    lo, hi = t["data_offsets"]
    blob = b[8 + n + lo:8 + n + hi]
    if k in shapes:
        t["shape"] = shapes[k]
        count = 1
        for d in shapes[k]:
            count *= d
        blob = bytes(4 * count)
    out[k] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [len(data), len(data) + len(blob)]}
    data += blob
h = json.dumps(out).encode()
open(dst, "wb").write(struct.pack("<Q", len(h)) + h + data)
EOF
}

# utf8_line FILE: one line of valid UTF-8 without control characters (C0, DEL, C1).
utf8_line() {
  python3 -c '
import sys
s = open(sys.argv[1], "rb").read()
try:
    t = s.decode("utf-8")
except UnicodeDecodeError:
    sys.exit(1)
sys.exit(0 if t.count("\n") == 1 and t.endswith("\n") and all(c >= " " and not "\x7f" <= c <= "\x9f" for c in t[:-1]) else 1)' "$1"
}
# ascii_line FILE MAX: one line of printable ASCII, at most MAX characters.
ascii_line() {
  python3 -c '
import sys
t = open(sys.argv[1], "rb").read()
sys.exit(0 if t.endswith(b"\n") and len(t) <= int(sys.argv[2]) + 1 and all(32 <= c < 127 for c in t[:-1]) else 1)' "$1" "$2"
}

# 1. A tensor of the wrong shape: both shapes as they are, for any number of dims.
rewrite "$M" "$TMP/s1.safetensors" h.0.ln_1.weight=64
expect_error "1-D shape" "s1.safetensors: tensor 'h.0.ln_1.weight' has shape [64], the model needs [32]" \
  "$LOOM" eval --init-from "$TMP/s1.safetensors" $EVAL
rewrite "$M" "$TMP/s2.safetensors" h.0.attn.c_attn.weight=32,48
expect_error "2-D shape" "tensor 'h.0.attn.c_attn.weight' has shape [32, 48], the model needs [32, 96]" \
  "$LOOM" eval --init-from "$TMP/s2.safetensors" $EVAL
rewrite "$M" "$TMP/s3.safetensors" ln_f.bias=32,1,1
expect_error "3-D for 1-D" "tensor 'ln_f.bias' has shape [32, 1, 1], the model needs [32]" \
  "$LOOM" eval --init-from "$TMP/s3.safetensors" $EVAL
rewrite "$M" "$TMP/s4.safetensors" ln_f.weight=
expect_error "scalar for 1-D" "tensor 'ln_f.weight' has shape [], the model needs [32]" \
  "$LOOM" eval --init-from "$TMP/s4.safetensors" $EVAL

# 2. A Hugging Face style file without n_head: not in the metadata, not in config.json.
mkdir -p "$TMP/hf"
H=$TMP/hf/model.safetensors
rewrite "$M" "$H" -n_head
expect_error "no head count" \
  "$H: the number of heads is not in the file's metadata nor in $TMP/hf/config.json (n_head); give --n-head" \
  "$LOOM" eval --init-from "$H" $EVAL
"$LOOM" eval --init-from "$H" --n-head 2 $EVAL >/dev/null 2>"$TMP/e2"
rc=$?; check "--n-head gives the head count: $(head -c 300 "$TMP/e2")" test $rc -eq 0
expect_error "--n-head does not divide" "$H: --n-head 3 does not divide the file's width 32" \
  "$LOOM" eval --init-from "$H" --n-head 3 $EVAL
echo '{"n_head": 2}' >"$TMP/hf/config.json"
"$LOOM" eval --init-from "$H" $EVAL >/dev/null 2>"$TMP/e2"
rc=$?; check "config.json gives the head count: $(head -c 300 "$TMP/e2")" test $rc -eq 0
printf '{"n_embd": 32, "n_head": 2,' >"$TMP/hf/config.json"
expect_error "malformed config.json" "$TMP/hf/config.json:1:28: not valid JSON" "$LOOM" eval --init-from "$H" $EVAL
echo '{"n_head": "two"}' >"$TMP/hf/config.json"
expect_error "config.json n_head not a number" "$TMP/hf/config.json: n_head must be a positive integer" \
  "$LOOM" eval --init-from "$H" $EVAL
echo '{"n_head": 5}' >"$TMP/hf/config.json"
expect_error "config.json n_head does not divide" "$H: n_head 5 from $TMP/hf/config.json does not divide the width 32" \
  "$LOOM" eval --init-from "$H" $EVAL
rm "$TMP/hf/config.json"
mkdir "$TMP/hf/config.json"
expect_error "config.json is a directory" "$TMP/hf/config.json: cannot read: Is a directory" \
  "$LOOM" eval --init-from "$H" $EVAL

# 3. A directory where a file belongs: the path and "is a directory".
mkdir -p "$TMP/dir"
expect_error "tokenizer is a directory" "$TMP/dir: is a directory" "$LOOM" sample --init-from "$M" --tokenizer "$TMP/dir"
expect_error "model is a directory" "$TMP/dir: is a directory" "$LOOM" eval --init-from "$TMP/dir" $EVAL
expect_error "sample model is a directory" "$TMP/dir: is a directory" "$LOOM" sample --init-from "$TMP/dir"
expect_error "prompt file is a directory" "--prompt-file: cannot read $TMP/dir: Is a directory" \
  "$LOOM" sample --init-from "$M" --prompt-file "$TMP/dir"
echo "To be, or not to be" >"$TMP/in.txt"
expect_error "prep tokenizer is a directory" "$TMP/dir: is a directory" \
  "$LOOM" prep "$TMP/in.txt" --tokenizer "$TMP/dir" --out "$TMP/p"
expect_error "prep input is a directory" "$TMP/dir: cannot read: Is a directory" "$LOOM" prep "$TMP/dir" --out "$TMP/p"

# 4. A garbage tokenizer: file and line named, the excerpt escaped (\xNN) and short.
head -c 4000 /dev/urandom >"$TMP/random.tiktoken"
expect_error "random tokenizer" "$TMP/random.tiktoken:" "$LOOM" sample --init-from "$M" --tokenizer "$TMP/random.tiktoken"
check "random bytes are not echoed: $(od -c "$TMP/err" | head -5)" utf8_line "$TMP/err"
printf 'A\x1b[31mB\x07\xff\xfe\x80\xc2\x9b2J\xe2\x80\xaeZ\xef\xbb\xbfQ 0\n' >"$TMP/esc.tiktoken"
expect_error "control bytes escaped" "esc.tiktoken:1: bad base64 token 'A\\x1b[31mB\\x07\\xff\\xfe\\x80\\xc2\\x9b2J\\xe2...'" \
  "$LOOM" sample --init-from "$M" --tokenizer "$TMP/esc.tiktoken"
P="loom sample: error: $TMP/esc.tiktoken:1: bad base64 token ''"
check "escaped excerpt is printable ASCII and short: $(cat "$TMP/err")" ascii_line "$TMP/err" $((${#P} + 43))
printf 'IQ== 0\n\xe2\x80\xae\xc4\xa0t\xc2\x85 1\n' >"$TMP/utf8.tiktoken"
expect_error "format characters escaped" "utf8.tiktoken:2: bad base64 token '\\xe2\\x80\\xae"$'\xc4\xa0'"t\\xc2\\x85'" \
  "$LOOM" sample --init-from "$M" --tokenizer "$TMP/utf8.tiktoken"
python3 -c 'import sys; sys.stdout.write("To be, or not to be, that is the question. " * 100)' >"$TMP/prose.tiktoken"
expect_error "prose tokenizer" "prose.tiktoken:1: bad base64 token 'To'" \
  "$LOOM" sample --init-from "$M" --tokenizer "$TMP/prose.tiktoken"
python3 -c 'import sys; sys.stdout.write("Whether-tis-nobler-in-the-mind-to-suffer" * 100 + "\n")' >"$TMP/long.tiktoken"
expect_error "long line" "long.tiktoken:1: missing rank" "$LOOM" sample --init-from "$M" --tokenizer "$TMP/long.tiktoken"
P="loom sample: error: $TMP/long.tiktoken:1: missing rank (expected 'base64 rank', got '')"
check "long line cut short: $(cat "$TMP/err")" ascii_line "$TMP/err" $((${#P} + 43))

# 5. More new tokens than the block size leaves after the prompt: refused up front, exit 2.
expect_error "max-tokens past the block size" \
  "--max-tokens: 40 new tokens after the prompt of 3 tokens exceed the model's block size 32 (at most 29)" \
  "$LOOM" sample --init-from "$M" --prompt "ROMEO:" --max-tokens 40
"$LOOM" sample --init-from "$M" --prompt "ROMEO:" --max-tokens 40 >/dev/null 2>&1
check "max-tokens past the block size exits 2" test $? -eq 2
expect_error "max-tokens past the block size, batch" \
  "--max-tokens: 26 new tokens after prompt 2 of 7 tokens exceed the model's block size 32 (at most 25)" \
  "$LOOM" sample --init-from "$M" --prompt "ROMEO:" --prompt "a b c d e f g" --max-tokens 26
"$LOOM" sample --init-from "$M" --prompt "ROMEO:" --max-tokens 29 --threads 2 >/dev/null 2>"$TMP/e5"
rc=$?; check "max-tokens that fit: $(head -c 300 "$TMP/e5")" test $rc -eq 0
# a data directory instead of its files
mkdir -p "$TMP/shards"
expect_error "train --data DIR" "$TMP/shards: is a directory (give its files, e.g. '$TMP/shards/*.bin')" \
  "$LOOM" train --data "$TMP/shards" --steps 1
finish input_errors
