#!/usr/bin/env bash
# MPI data parallelism (Open MPI, oversubscribed on 2 cores): 1, 2 and 4 ranks give
# bitwise the single process's losses and weights; resume 4 -> 2 and 2 -> 1 continues
# bitwise; a rank with bad input or a killed rank ends the job fast, naming the rank;
# a world of 1 where the launcher says more is refused.
# Skipped (77) when this loom was built without MPI or mpirun is missing.
source "$(dirname "$0")/lib.sh"
mpi_setup
M="--model tiny --n-layer 2 --n-embd 64 --n-head 4 --block-size 64 --data data/tinyshakespeare_train.bin
   --batch 2 --seq-len 32 --total-batch-tokens 256 --warmup 2 --lr 3e-3 --clip 0.5 --shuffle on
   --threads 1 --peak-gflops 200 --quiet"
M0=$M # without --steps, for the cases that set their own (a flag given twice is refused)
M="$M0 --steps 8"
losses() { sed -E 's/.*"step": ([0-9]+), "loss": ([^,]*), "lr": ([^,]*), "grad_norm": ([^,]*),.*/\1 \2 \3 \4/' "$1"; }

"$LOOM" train $M --out "$TMP/single" --ckpt-dir "$TMP/single/ck"
for n in 1 2 4; do
  timeout 120 "${RUN[@]}" -np $n "$LOOM" train $M --out "$TMP/np$n" --ckpt-dir "$TMP/np$n/ck" --ckpt-every 4
  check "np $n: exit 0" test $? -eq 0
  check "np $n: losses, lrs and grad norms bitwise the single process's" \
    cmp -s <(losses "$TMP/single/metrics.jsonl") <(losses "$TMP/np$n/metrics.jsonl")
  check "np $n: final weights bitwise" cmp -s "$TMP/single/model.safetensors" "$TMP/np$n/model.safetensors"
  check "np $n: final checkpoint (weights + Adam state) bitwise" \
    cmp -s "$TMP/single/ck/step_00000008.safetensors" "$TMP/np$n/ck/step_00000008.safetensors"
done
# per-rank traces: valid Chrome trace JSON with the step's phases, one file per rank
timeout 120 "${RUN[@]}" -np 2 "$LOOM" train $M --zero 1 --trace "$TMP/tr" --out "$TMP/trace"
for r in 0 1; do
  check "trace of rank $r: valid JSON with forward/backward, reduce-scatter, adamw and all-gather events" \
    /usr/bin/python3 -c "
import json, sys
ev = json.load(open('$TMP/tr.rank$r.json'))
names = {e['name'] for e in ev}
need = {'data', 'forward + backward', 'bucket reduce-scatter', 'grad norm', 'adamw', 'bucket all-gather'}
comm = [e for e in ev if e['name'].startswith('bucket ')]
sys.exit(0 if need <= names and all(e.get('pid') == $r for e in ev) and all(e['tid'] == 1 for e in comm) else 1)"
done
# one merged trace: every rank a process, on one time axis (rank 0's clock): each
# collective's k-th bucket overlaps in time on both ranks (neither can finish one before
# the other has started it), within the measured round trips
"$LOOM" trace merge "$TMP/tr" --out "$TMP/job.json" >/dev/null
check "trace merge: exit 0" test $? -eq 0
/usr/bin/python3 - "$TMP/job.json" >"$TMP/merge.log" 2>&1 <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))
pids = {e["pid"] for e in ev}
names = {e["pid"]: e["args"]["name"] for e in ev if e["name"] == "process_name"}
sync = {e["pid"]: e["args"] for e in ev if e["name"] == "clock_sync"}
fails = []
if pids != {0, 1} or set(names) != {0, 1} or set(sync) != {0, 1}:
    fails.append("pids %s, process names %s, clock_sync %s" % (pids, names, sorted(sync)))
tol = 2 * max(s["round_trip_us"] for s in sync.values()) + 200.0
worst, n = 0.0, 0
for name in ("bucket reduce-scatter", "bucket all-gather"):
    per = [[e for e in ev if e["pid"] == r and e["name"] == name] for r in (0, 1)]
    if len(per[0]) != len(per[1]) or not per[0]:
        fails.append("%s: %d vs %d events" % (name, len(per[0]), len(per[1])))
        continue
    for a, b in zip(*per):
        gap = max(a["ts"], b["ts"]) - min(a["ts"] + a["dur"], b["ts"] + b["dur"])
        worst, n = max(worst, gap), n + 1
if worst > tol:
    fails.append("a collective's bucket ended on one rank %.0f us before it began on the other (tolerance %.0f us)" % (worst, tol))
print("%d collective buckets, worst gap %.0f us (tolerance %.0f us)" % (n, worst, tol))
for f in fails:
    print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
rc=$?; check "merged trace: one process per rank, collectives aligned ($(tail -1 "$TMP/merge.log"))" test $rc -eq 0
expect_error "trace merge of a missing prefix" "nope.rank0.json: cannot read" \
  "$LOOM" trace merge "$TMP/nope" --out "$TMP/x.json"
cp "$TMP/tr.rank0.json" "$TMP/bad.rank0.json"
cp "$TMP/tr.rank0.json" "$TMP/bad.rank1.json"
expect_error "trace merge of another rank's file" "bad.rank1.json: event 0 is not rank 1's" \
  "$LOOM" trace merge "$TMP/bad" --out "$TMP/x.json"

# ZeRO-1: each rank keeps AdamW state for its shard only; the result is bitwise the same
for n in 2 4; do
  timeout 120 "${RUN[@]}" -np $n "$LOOM" train $M --zero 1 --out "$TMP/z$n" --ckpt-dir "$TMP/z$n/ck" --ckpt-every 4
  check "ZeRO-1 np $n: losses bitwise" cmp -s <(losses "$TMP/single/metrics.jsonl") <(losses "$TMP/z$n/metrics.jsonl")
  check "ZeRO-1 np $n: final checkpoint (gathered Adam state) bitwise" \
    cmp -s "$TMP/single/ck/step_00000008.safetensors" "$TMP/z$n/ck/step_00000008.safetensors"
done
# ZeRO-2 (gradients sharded, per-micro-batch reduce-scatter), small buckets, overlap on
# and off: still bitwise; MPI-IO checkpoints byte-identical to the single process's
for cfg in "2 --zero 2" "4 --zero 2 --bucket-mb 0.05" "4 --zero 2 --overlap 0" "2 --zero 0 --bucket-mb 0.05" \
           "4 --zero 1 --bucket-mb 0.05" "4 --zero 0 --overlap 0"; do
  set -- $cfg
  np=$1
  shift
  d="$TMP/c$(echo "$cfg" | tr -d ' .-')"
  timeout 120 "${RUN[@]}" -np $np "$LOOM" train $M "$@" --out "$d" --ckpt-dir "$d/ck" --ckpt-every 4
  check "np $cfg: losses bitwise" cmp -s <(losses "$TMP/single/metrics.jsonl") <(losses "$d/metrics.jsonl")
  check "np $cfg: final checkpoint bitwise" \
    cmp -s "$TMP/single/ck/step_00000008.safetensors" "$d/ck/step_00000008.safetensors"
done
timeout 120 "${RUN[@]}" -np 2 "$LOOM" train ${M/--quiet/} --zero 2 --out "$TMP/z2m" 2>&1 | grep "memory per rank" >"$TMP/z2m.txt"
check "ZeRO-2 prints its shard-sized accumulation tree" grep -q "(ZeRO-2 shards)" "$TMP/z2m.txt"

timeout 120 "${RUN[@]}" -np 4 "$LOOM" train $M --zero 1 --out "$TMP/zr" --ckpt-dir "$TMP/zr/ck" --stop-at 4
timeout 120 "${RUN[@]}" -np 2 "$LOOM" train $M --out "$TMP/zr" --ckpt-dir "$TMP/zr/ck" --resume
check "resume ZeRO-1 on 4 ranks -> plain on 2 continues bitwise" \
  cmp -s "$TMP/single/ck/step_00000008.safetensors" "$TMP/zr/ck/step_00000008.safetensors"

# resume on another rank count: 4 -> 2 and 2 -> 1
timeout 120 "${RUN[@]}" -np 4 "$LOOM" train $M --out "$TMP/r42" --ckpt-dir "$TMP/r42/ck" --stop-at 4
timeout 120 "${RUN[@]}" -np 2 "$LOOM" train $M --out "$TMP/r42" --ckpt-dir "$TMP/r42/ck" --resume
check "resume 4 -> 2 continues bitwise" cmp -s "$TMP/single/ck/step_00000008.safetensors" "$TMP/r42/ck/step_00000008.safetensors"
timeout 120 "${RUN[@]}" -np 2 "$LOOM" train $M --out "$TMP/r21" --ckpt-dir "$TMP/r21/ck" --stop-at 4
"$LOOM" train $M --out "$TMP/r21" --ckpt-dir "$TMP/r21/ck" --resume
check "resume 2 -> 1 continues bitwise" cmp -s "$TMP/single/ck/step_00000008.safetensors" "$TMP/r21/ck/step_00000008.safetensors"

# Llama (grouped-query attention, untied head): 2 and 4 ranks with ZeRO 0, 1 and 2 give
# the single process's losses and checkpoint bitwise; resume 4 -> 2 -> 1 continues bitwise
LM="--model llama-tiny --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --ffn-dim 96 --tie off --block-size 64
    --data data/tinyshakespeare_train.bin --batch 2 --seq-len 32 --total-batch-tokens 256 --steps 6 --warmup 2
    --lr 3e-3 --clip 0.5 --threads 1 --peak-gflops 200 --quiet"
"$LOOM" train $LM --out "$TMP/lsingle" --ckpt-dir "$TMP/lsingle/ck"
for cfg in "2 --zero 0" "2 --zero 1" "4 --zero 2 --bucket-mb 0.05"; do
  set -- $cfg
  np=$1
  shift
  d="$TMP/l$(echo "$cfg" | tr -d ' .-')"
  timeout 120 "${RUN[@]}" -np $np "$LOOM" train $LM "$@" --out "$d" --ckpt-dir "$d/ck"
  check "Llama np $cfg: losses bitwise" cmp -s <(losses "$TMP/lsingle/metrics.jsonl") <(losses "$d/metrics.jsonl")
  check "Llama np $cfg: final checkpoint bitwise" \
    cmp -s "$TMP/lsingle/ck/step_00000006.safetensors" "$d/ck/step_00000006.safetensors"
done
timeout 120 "${RUN[@]}" -np 4 "$LOOM" train $LM --zero 1 --out "$TMP/lr" --ckpt-dir "$TMP/lr/ck" --stop-at 2
timeout 120 "${RUN[@]}" -np 2 "$LOOM" train $LM --zero 2 --out "$TMP/lr" --ckpt-dir "$TMP/lr/ck" --stop-at 4 --resume
"$LOOM" train $LM --out "$TMP/lr" --ckpt-dir "$TMP/lr/ck" --resume
check "Llama resume 4 (ZeRO-1) -> 2 (ZeRO-2) -> 1 continues bitwise" \
  cmp -s "$TMP/lsingle/ck/step_00000006.safetensors" "$TMP/lr/ck/step_00000006.safetensors"

# process groups: tp x dp x pp from MPI_Comm_split, each collective on its own group
GROUP_TEST=$(dirname "$LOOM")/tests/test_groups
if [ -x "$GROUP_TEST" ]; then
  for lay in "4 2 1" "8 2 2" "4 1 4"; do
    set -- $lay
    timeout 120 "${RUN[@]}" -np $1 "$GROUP_TEST" $2 $3 >"$TMP/groups.out" 2>&1
    check "groups on $1 ranks, tp $2 pp $3 ($(grep -m2 FAIL "$TMP/groups.out"))" grep -q "test_groups: [0-9]* passed, 0 failed" "$TMP/groups.out"
  done
fi

# one rank with a corrupt shard: the job ends non-zero, fast, naming the rank
head -c 5000 data/tinyshakespeare_train.bin >"$TMP/corrupt.bin"
cat >"$TMP/per_rank.sh" <<EOS
#!/usr/bin/env bash
r=\${OMPI_COMM_WORLD_RANK:-\${PMI_RANK:-0}}
d=data/tinyshakespeare_train.bin
[ "\$r" = 1 ] && d="$TMP/corrupt.bin"
exec "$LOOM" train $(echo ${M0/--data data\/tinyshakespeare_train.bin/}) --steps 400 --data "\$d" --out "$TMP/bad"
EOS
chmod +x "$TMP/per_rank.sh"
start=$(date +%s)
timeout 60 "${RUN[@]}" -np 2 "$TMP/per_rank.sh" >/dev/null 2>"$TMP/bad.err"
rc=$?
took=$(($(date +%s) - start))
check "corrupt shard on rank 1: non-zero exit (got $rc)" test $rc -ne 0 -a $rc -ne 124
check "corrupt shard on rank 1: message names the rank and file" grep -q "error (rank 1 of 2): .*corrupt.bin: truncated" "$TMP/bad.err"
check "corrupt shard on rank 1: ended within 20 s ($took s)" test $took -le 20

# kill -9 of one rank: the job ends, fast
timeout 60 "${RUN[@]}" -np 2 "$LOOM" train $M0 --steps 100000 --out "$TMP/kill" >/dev/null 2>"$TMP/kill.err" &
job=$!
for _ in $(seq 100); do [ -s "$TMP/kill/metrics.jsonl" ] && break; sleep 0.1; done
victim=$(pgrep -f "loom train .*--out $TMP/kill" | tail -n 1)
start=$(date +%s)
kill -9 "$victim"
wait $job
rc=$?
took=$(($(date +%s) - start))
check "killed rank: non-zero exit (got $rc)" test $rc -ne 0 -a $rc -ne 124
check "killed rank: job ended within 20 s ($took s)" test $took -le 20

# prep over ranks: one large document cut at safe points, and many JSON-lines
# documents split by range, give the single process's shards byte for byte
/usr/bin/python3 -c "
import json
t = open('data/tinyshakespeare.txt').read()
with open('$TMP/docs.jsonl', 'w') as f:
    for i in range(0, 200000, 3001): f.write(json.dumps({'text': t[i:i + 3001]}) + '\n')"
P="data/tinyshakespeare.txt $TMP/docs.jsonl --tokenizer data/gpt2/r50k_base.tiktoken --val-tokens 5000 --shard-tokens 100000 --threads 1 --quiet"
"$LOOM" prep $P --out "$TMP/prep1" >/dev/null
for n in 2 4; do
  timeout 120 "${RUN[@]}" -np $n "$LOOM" prep $P --out "$TMP/prep$n" >/dev/null
  check "prep on $n ranks: shards identical to one process" diff -r "$TMP/prep1" "$TMP/prep$n"
done

# a rank that stops answering (SIGSTOP): the others' collective times out, each says
# which collective it waits in, and the job ends
timeout 60 "${RUN[@]}" -np 2 "$LOOM" train $M0 --steps 100000 --comm-timeout 3 --out "$TMP/hang" >/dev/null 2>"$TMP/hang.err" &
job=$!
for _ in $(seq 100); do [ -s "$TMP/hang/metrics.jsonl" ] && break; sleep 0.1; done
victim=$(pgrep -f "loom train .*--out $TMP/hang" | tail -n 1)
start=$(date +%s)
kill -STOP "$victim"
wait $job
rc=$?
took=$(($(date +%s) - start))
kill -KILL "$victim" 2>/dev/null
check "hung rank: non-zero exit (got $rc)" test $rc -ne 0 -a $rc -ne 124
check "hung rank: the waiting rank names its collective" grep -q "collective #[0-9]*, .* has not completed after 3 s" "$TMP/hang.err"
check "hung rank: job ended within 20 s ($took s)" test $took -le 20

# the wrong launch: a world of 1 where the launcher says 2
expect_error "SLURM_NTASKS mismatch" "MPI sees 1 process but SLURM_NTASKS=2" \
  env SLURM_NTASKS=2 "$LOOM" train $M --out "$TMP/wrong"
# a full disk during an MPI-IO checkpoint (root: a 4 MiB tmpfs): one clear line per
# rank (Open MPI reports a short write, MPICH the errno), no checkpoint committed, no
# temporary left
if [ "$(id -u)" = 0 ] && mkdir -p "$TMP/full" && mount -t tmpfs -o size=4m tmpfs "$TMP/full" 2>/dev/null; then
  timeout 60 "${RUN[@]}" -np 2 "$LOOM" train $M0 --zero 1 --steps 2 --ckpt-dir "$TMP/full/ck" --out "$TMP/fullrun" \
    >/dev/null 2>"$TMP/full.err"
  rc=$?
  check "MPI-IO checkpoint on a full disk: non-zero exit (got $rc)" test $rc -ne 0 -a $rc -ne 124
  check "MPI-IO checkpoint on a full disk: the writing rank says why" \
    grep -q "error (rank 0 of 2): checkpoint at step 2 failed (previous checkpoints untouched): .*step_00000002.safetensors.[0-9]*.tmp: \(short write\|write failed: .*No space left on device\)" "$TMP/full.err"
  check "MPI-IO checkpoint on a full disk: one line per rank (no MPI error stack on further lines)" \
    test "$(grep -c "^loom" "$TMP/full.err")" = 2 -a "$(grep -c "error stack\|^ADIOI" "$TMP/full.err")" = 0
  check "MPI-IO checkpoint on a full disk: the other rank names it" \
    grep -q "error (rank 1 of 2): .*writing failed on rank 0" "$TMP/full.err"
  check "MPI-IO checkpoint on a full disk: nothing committed or left behind (but the run's lock)" \
    test -z "$(ls -A "$TMP/full/ck" | grep -vx '.lock')"
  umount "$TMP/full"
fi

# MPMD launches whose ranks were given different runs: refused at start-up by one
# agreement collective, fast, in one line naming the field, both values and the ranks
disagree() { # disagree WHAT WANT "RANK 0 FLAGS" "RANK 1 FLAGS"
  local start took rc
  start=$(date +%s)
  timeout 60 "${RUN[@]}" -np 1 "$LOOM" train $MD --out "$TMP/mpmd" $3 : -np 1 "$LOOM" train $MD --out "$TMP/mpmd" $4 \
    >/dev/null 2>"$TMP/mpmd.err"
  rc=$?
  took=$(($(date +%s) - start))
  check "MPMD, different $1: non-zero exit (got $rc)" test $rc -ne 0 -a $rc -ne 124
  check "MPMD, different $1: one line naming the field and the ranks ($(head -c 300 "$TMP/mpmd.err"))" \
    test "$(grep -c '^loom' "$TMP/mpmd.err")" -eq 1 -a "$(grep '^loom' "$TMP/mpmd.err" | grep -cF -- "$2")" -eq 1
  check "MPMD, different $1: refused within 20 s ($took s)" test $took -le 20
}
W="the ranks were given different flags and data:"
MD=${M0/--data data\/tinyshakespeare_train.bin/} DT="--data data/tinyshakespeare_train.bin --n-layer 2"
MD=${MD/--n-layer 2/} DL="--data data/tinyshakespeare_train.bin"
disagree "--seed" "$W --seed is '1' on rank 0 but '2' on rank 1" "$DT --steps 4 --seed 1" "$DT --steps 4 --seed 2"
disagree "--weight-decay" "$W --weight-decay is '0.100000001' on rank 0 but '0.200000003' on rank 1" \
  "$DT --steps 4 --weight-decay 0.1" "$DT --steps 4 --weight-decay 0.2"
disagree "--steps" "$W --steps is '4' on rank 0 but '5' on rank 1" "$DT --steps 4" "$DT --steps 5"
disagree "--n-layer" "$W --n-layer is '2' on rank 0 but '3' on rank 1" "$DT --steps 4" "$DL --steps 4 --n-layer 3"
disagree "--ckpt-dir" "$W --ckpt-dir is '$TMP/ca' on rank 0 but '$TMP/cb' on rank 1" \
  "$DT --steps 4 --ckpt-dir $TMP/ca" "$DT --steps 4 --ckpt-dir $TMP/cb"
head -c 200000 data/tinyshakespeare_train.bin >"$TMP/other.bin"
/usr/bin/python3 -c "
import struct
b = bytearray(open('$TMP/other.bin', 'rb').read()); b[8:12] = struct.pack('<i', (len(b) - 1024) // 2)
open('$TMP/other.bin', 'wb').write(b)"
disagree "--data" "$W --data is '1 file(s), " "$DT --steps 4" "--n-layer 2 --steps 4 --data $TMP/other.bin"
disagree "--zero" "$W --zero is '0' on rank 0 but '1' on rank 1" "$DT --steps 4" "$DT --steps 4 --zero 1"
# prep too: ranks given other inputs would pair other files in their gathers
printf 'one\n' >"$TMP/a.txt"
printf 'two two\n' >"$TMP/b.txt"
timeout 60 "${RUN[@]}" -np 1 "$LOOM" prep "$TMP/a.txt" --out "$TMP/pp" --quiet : -np 1 "$LOOM" prep "$TMP/b.txt" \
  --out "$TMP/pp" --quiet >/dev/null 2>"$TMP/pp.err"
rc=$?
check "MPMD prep, different inputs: non-zero exit (got $rc)" test $rc -ne 0 -a $rc -ne 124
check "MPMD prep, different inputs: one line naming the inputs ($(head -c 300 "$TMP/pp.err"))" \
  test "$(grep -c '^loom' "$TMP/pp.err")" -eq 1 -a "$(grep -c "the ranks were given different inputs and flags: the input list is '1 file(s), 4 bytes" "$TMP/pp.err")" -eq 1
check "MPMD prep, different inputs: nothing written" test ! -e "$TMP/pp"

finish mpi
