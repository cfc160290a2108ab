#!/usr/bin/env bash
# Crash safety: kill -9 a checkpointing run at random moments (during steps and during
# saves: LOOM_TEST_CKPT_PAUSE_MS holds some saves between the finished temporary file
# and its commit) at least 20 times, resuming after each kill. Every resume must find
# an intact checkpoint, and the run must end bitwise where an uninterrupted run ends.
source "$(dirname "$0")/lib.sh"
M="--model tiny --n-layer 1 --n-embd 32 --n-head 2 --block-size 32 --data data/tinyshakespeare_train.bin
   --batch 2 --seq-len 16 --steps 200 --warmup 5 --lr 3e-3 --clip 0.5 --seed 5 --threads 2
   --peak-gflops 400 --quiet --ckpt-every 1 --keep 2"
"$LOOM" train $M --out "$TMP/ref" --ckpt-dir "$TMP/ref/ck"
check "reference run" test -s "$TMP/ref/ck/step_00000200.safetensors"

RANDOM=20261127
kills=0 resumes=0 attempts=0 done=0
while [ $done -eq 0 ] && [ $attempts -lt 200 ]; do
  attempts=$((attempts + 1))
  args=()
  [ -e "$TMP/run/ck/latest" ] && args=(--resume) && resumes=$((resumes + 1))
  pause=0
  [ $((RANDOM % 2)) -eq 0 ] && pause=$((RANDOM % 40))
  LOOM_TEST_CKPT_PAUSE_MS=$pause "$LOOM" train $M --out "$TMP/run" --ckpt-dir "$TMP/run/ck" "${args[@]}" \
    >/dev/null 2>"$TMP/err" &
  pid=$!
  if [ $kills -lt 24 ]; then
    sleep "0.$((RANDOM % 4))$((RANDOM % 10))5"
    kill -9 $pid 2>/dev/null && kills=$((kills + 1))
  fi
  wait $pid
  rc=$?
  if [ $rc -eq 0 ]; then
    done=1
  elif [ $rc -ne 137 ]; then
    bad "attempt $attempts (after $kills kills) failed with status $rc: $(head -c 300 "$TMP/err")"
    break
  fi
  ls "$TMP/run/ck" | grep -q '\.tmp$' && [ $rc -eq 0 ] && bad "temporary file left after a clean finish"
done
echo "kills: $kills, resumes: $resumes, attempts: $attempts"
check "at least 20 kills ($kills)" test $kills -ge 20
check "the run finished" test $done -eq 1
check "final checkpoint bitwise equal to the uninterrupted run's" \
  cmp -s "$TMP/ref/ck/step_00000200.safetensors" "$TMP/run/ck/step_00000200.safetensors"
last() { awk -F'"loss": ' '{split($1, a, "\"step\": "); split(a[2], s, ","); l[s[1]] = $2} END {for (k in l) print k, l[k]}' "$1" | sort -n | cut -d, -f1-3; }
check "every step's last logged loss equals the uninterrupted run's" cmp -s <(last "$TMP/ref/metrics.jsonl") <(last "$TMP/run/metrics.jsonl")
finish kill9
