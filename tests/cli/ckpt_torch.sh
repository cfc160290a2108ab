#!/usr/bin/env bash
# The checkpoint loads in PyTorch with the same values as loom's export (skipped, exit
# 77, when Debian's python3-torch is not installed).
source "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "torch not installed: skipped"; exit 77; }
# a byte-level corpus (vocab 256) keeps the model small enough for a Python CRC
od -An -v -tu1 -w1 data/tinyshakespeare.txt | head -n 20000 | tr -d ' ' |
  /usr/bin/python3 -c "import sys, array; array.array('H', map(int, sys.stdin)).tofile(open(sys.argv[1], 'wb'))" "$TMP/bytes.u16"
"$LOOM" train --model tiny --vocab-size 256 --n-layer 2 --n-embd 32 --n-head 4 --block-size 32 \
  --data "$TMP/bytes.u16" --batch 4 --seq-len 32 --steps 6 --peak-gflops 400 --quiet \
  --out "$TMP/run" --ckpt-dir "$TMP/ck"
"$LOOM" export --init-from "$TMP/ck/step_00000006.safetensors" --out "$TMP/exp" >/dev/null
/usr/bin/python3 tests/pytorch/check_checkpoint.py "$TMP/ck/step_00000006.safetensors" "$TMP/exp/model.safetensors"
