#!/usr/bin/env bash
# loom sample: the same seed gives the same text; the KV cache and full recompute give
# the same text (GPT-2 and Llama); batched prompts; a checkpoint works as a model; bad
# input is one line.
source "$(dirname "$0")/lib.sh"
M="--model tiny --n-layer 2 --n-embd 64 --n-head 4 --block-size 64"
"$LOOM" train $M --data data/tinyshakespeare_train.bin --batch 4 --seq-len 32 --steps 30 --lr 3e-3 \
  --peak-gflops 400 --quiet --out "$TMP/run" --ckpt-dir "$TMP/ck"
S0="--init-from $TMP/run/model.safetensors --max-tokens 24"
S="$S0 --seed 9"
"$LOOM" sample $S --prompt "ROMEO:" >"$TMP/a" 2>"$TMP/a.err"
check "sample exit 0" test $? -eq 0
"$LOOM" sample $S --prompt "ROMEO:" >"$TMP/b" 2>/dev/null
"$LOOM" sample $S --prompt "ROMEO:" --no-kv-cache >"$TMP/c" 2>"$TMP/c.err"
"$LOOM" sample $S0 --prompt "ROMEO:" --seed 10 >"$TMP/d" 2>/dev/null
check "output starts with the prompt" grep -q "^ROMEO:" "$TMP/a"
check "same seed, same text" cmp -s "$TMP/a" "$TMP/b"
check "KV cache and full recompute give the same text" cmp -s "$TMP/a" "$TMP/c"
check "another seed, another text" not cmp -s "$TMP/a" "$TMP/d"
check "tokens/s reported" grep -q "tokens/s (KV cache on)" "$TMP/a.err"
"$LOOM" sample --init-from "$TMP/ck/step_00000030.safetensors" --max-tokens 24 --seed 9 --prompt "ROMEO:" >"$TMP/e" 2>/dev/null
check "a checkpoint samples like the exported model" cmp -s "$TMP/a" "$TMP/e"
"$LOOM" sample $S --prompt "ROMEO:" --prompt "JULIET:" --prompt "" >"$TMP/f" 2>/dev/null
check "three batched samples" test "$(grep -c '^--- sample' "$TMP/f")" -eq 3
"$LOOM" sample $S --temperature 0 --prompt "First Citizen:" >"$TMP/g1" 2>/dev/null
"$LOOM" sample $S0 --temperature 0 --seed 77 --prompt "First Citizen:" >"$TMP/g2" 2>/dev/null
check "greedy ignores the seed" cmp -s "$TMP/g1" "$TMP/g2"
# Llama (grouped-query heads): the KV cache decodes it too, choosing recompute's tokens
L="--model llama-tiny --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --ffn-dim 96 --block-size 64"
"$LOOM" train $L --data data/tinyshakespeare_train.bin --batch 4 --seq-len 32 --steps 20 --lr 3e-3 \
  --peak-gflops 400 --quiet --out "$TMP/lrun"
LS="--init-from $TMP/lrun/model.safetensors --max-tokens 40 --seed 9"
"$LOOM" sample $LS --prompt "ROMEO:" >"$TMP/la" 2>"$TMP/la.err"
check "llama: sample exit 0" test $? -eq 0
"$LOOM" sample $LS --prompt "ROMEO:" --no-kv-cache >"$TMP/lc" 2>"$TMP/lc.err"
check "llama: KV cache and full recompute give the same text" cmp -s "$TMP/la" "$TMP/lc"
check "llama: the KV cache is on" grep -q "tokens/s (KV cache on)" "$TMP/la.err"
check "llama: --no-kv-cache turns it off" grep -q "tokens/s (KV cache off)" "$TMP/lc.err"
"$LOOM" sample $LS --prompt "ROMEO:" --prompt "JULIET: O" --prompt "" >"$TMP/lf" 2>/dev/null
"$LOOM" sample $LS --prompt "ROMEO:" --prompt "JULIET: O" --prompt "" --no-kv-cache >"$TMP/lg" 2>/dev/null
check "llama: three batched samples" test "$(grep -c '^--- sample' "$TMP/lf")" -eq 3
check "llama: batched, KV cache and full recompute give the same text" cmp -s "$TMP/lf" "$TMP/lg"
"$LOOM" sample $LS --temperature 0 --prompt "First Citizen:" >"$TMP/lh" 2>/dev/null
"$LOOM" sample $LS --temperature 0 --prompt "First Citizen:" --no-kv-cache >"$TMP/li" 2>/dev/null
check "llama: greedy, KV cache and full recompute give the same text" cmp -s "$TMP/lh" "$TMP/li"
expect_error "bad top-p" "--top-p: 2 is out of range" "$LOOM" sample $S --top-p 2
expect_error "missing prompt file" "--prompt-file: cannot read $TMP/none.txt" "$LOOM" sample $S --prompt-file "$TMP/none.txt"
expect_error "bad tokenizer" "$TMP/none.tiktoken" "$LOOM" sample $S --tokenizer "$TMP/none.tiktoken"
finish sample
