#!/usr/bin/env bash
# Damaged checkpoints: a flipped byte in each part (header length, JSON header, CRC
# metadata, tensor data), a truncated and an empty file, a garbled `latest`. Reading one
# directly gives one clear error naming the file (and tensor); `--resume` from the
# directory falls back to the newest intact checkpoint with a warning. A full disk
# (a file-size limit) fails the save cleanly and leaves the previous checkpoint intact.
source "$(dirname "$0")/lib.sh"
M="--model tiny --n-layer 1 --n-embd 32 --n-head 2 --block-size 32 --data data/tinyshakespeare_train.bin
   --batch 2 --seq-len 16 --warmup 2 --seed 3 --threads 2 --peak-gflops 400 --quiet --steps 8"
"$LOOM" train $M --out "$TMP/a" --ckpt-dir "$TMP/a/ck" --ckpt-every 2 --keep 4
CK="$TMP/a/ck"
check "four checkpoints" test "$(ls "$CK" | grep -c '^step_')" -eq 4
size=$(stat -c %s "$CK/step_00000008.safetensors")
hdr=$(od -An -tu8 -N8 "$CK/step_00000008.safetensors" | tr -d ' ')

flip() { # flip FILE OFFSET: xor one byte with 0x5a
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((b ^ 90)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
damage() { # damage NAME HOW -> path of a damaged copy of step 8
  local p="$TMP/bad_$1.safetensors"
  cp "$CK/step_00000008.safetensors" "$p"
  case $2 in
    flip:*) flip "$p" "${2#flip:}" ;;
    trunc) truncate -s $((size / 2)) "$p" ;;
    empty) : >"$p" ;;
  esac
  echo "$p"
}
crc_off=$(grep -abo '"crc32c"' "$CK/step_00000008.safetensors" | head -1 | cut -d: -f1)
E="--data data/tinyshakespeare_val.bin --batch 2 --seq-len 16"
expect_error "flipped header length" "bad_len.safetensors" "$LOOM" eval --init-from "$(damage len flip:6)" $E
expect_error "flipped JSON header" "bad_json.safetensors" "$LOOM" eval --init-from "$(damage json flip:40)" $E
step_off=$(grep -abo '"step": *"8"' "$CK/step_00000008.safetensors" | head -1 | cut -d: -f1)
expect_error "flipped metadata value" "bad_meta.safetensors: metadata CRC32C" \
  "$LOOM" eval --init-from "$(damage meta flip:$((step_off + 8)))" $E
expect_error "flipped CRC metadata" "bad_crc.safetensors" "$LOOM" export --init-from "$(damage crc flip:$((crc_off + 20)))" --out "$TMP/x"
expect_error "flipped tensor data" "bad_data.safetensors: tensor 'optim.v.ln_f.bias': CRC32C" \
  "$LOOM" train $M --out "$TMP/r" --resume "$(damage data flip:$((size - 3)))"
expect_error "flipped weight data" "bad_w.safetensors: tensor 'wte.weight': CRC32C" \
  "$LOOM" export --init-from "$(damage w flip:$((8 + hdr + 100)))" --out "$TMP/x"
expect_error "truncated" "bad_trunc.safetensors" "$LOOM" train $M --out "$TMP/r" --resume "$(damage trunc trunc)"
expect_error "empty" "bad_empty.safetensors" "$LOOM" train $M --out "$TMP/r" --resume "$(damage empty empty)"

# `latest` falls back: corrupt step 8, then garble latest itself
flip "$CK/step_00000008.safetensors" $((size - 3))
"$LOOM" train $M --out "$TMP/r1" --ckpt-dir "$CK" --resume 2>"$TMP/warn1" >/dev/null
check "fallback resume exits 0" test $? -eq 0
check "fallback warns and names the tensor" grep -q "CRC32C .*resuming from $CK/step_00000006.safetensors" "$TMP/warn1"
check "fallback redid steps 7-8 into a good step 8" cmp -s "$CK/step_00000008.safetensors" "$TMP/a/ck/../../a/ck/step_00000008.safetensors"
echo garbage >"$CK/latest"
"$LOOM" train $M --out "$TMP/r2" --ckpt-dir "$CK" --resume 2>"$TMP/warn2" >/dev/null
check "garbled latest falls back" grep -q "does not name a step_.*resuming from $CK/step_00000008" "$TMP/warn2"
for f in "$CK"/step_*; do flip "$f" 20; done
"$LOOM" train $M --out "$TMP/r3" --ckpt-dir "$CK" --resume >/dev/null 2>"$TMP/none.err"
check "nothing intact: exit 1" test $? -eq 1
check "nothing intact: a warning per skipped file, then the error" \
  test "$(grep -c 'warning: skipping' "$TMP/none.err")" -eq "$(ls "$CK" | grep -c '^step_')" -a "$(tail -n 1 "$TMP/none.err" | grep -c "no intact checkpoint in $CK")" -eq 1

# full disk: the save fails, the previous checkpoint and latest stay as they were
"$LOOM" train $M --out "$TMP/d" --ckpt-dir "$TMP/d/ck" --stop-at 4
cp "$TMP/d/ck/step_00000004.safetensors" "$TMP/before"
( ulimit -f $((size / 1024 / 2)); "$LOOM" train $M --out "$TMP/d" --ckpt-dir "$TMP/d/ck" --resume --ckpt-every 2 ) \
  >/dev/null 2>"$TMP/full.err"
rc=$?
check "full disk: exit 1 (got $rc)" test $rc -eq 1
check "full disk: one clear line" grep -q "checkpoint at step 6 failed (previous checkpoints untouched): .*File too large" "$TMP/full.err"
check "full disk: previous checkpoint intact" cmp -s "$TMP/before" "$TMP/d/ck/step_00000004.safetensors"
check "full disk: latest unchanged" grep -qx "step_00000004.safetensors" "$TMP/d/ck/latest"
check "full disk: no temporary file left" test -z "$(ls -A "$TMP/d/ck" | grep tmp)"
( ulimit -f $((size / 1024 / 2)); "$LOOM" train $M --out "$TMP/d" --ckpt-dir "$TMP/d/ck" --resume --ckpt-every 2 \
  --ckpt-errors warn ) >/dev/null 2>"$TMP/warn.err"
check "--ckpt-errors warn goes on to the end" test $? -eq 0
check "--ckpt-errors warn warns" grep -q "warning: checkpoint at step 6 failed" "$TMP/warn.err"
expect_error "unwritable ckpt dir" "--ckpt-dir: cannot create directory /proc/loom" \
  "$LOOM" train $M --out "$TMP/u" --ckpt-dir /proc/loom/ck
finish ckpt_corrupt
