#!/usr/bin/env bash
# --tensorboard: the event files loom writes itself, read back by TensorBoard's own
# readers (the `tensorboard` package from PyPI in $LOOM_HF_VENV, which scripts/setup.sh
# makes):
#  - every scalar at every step equals metrics.jsonl's value (the loss and lr exactly;
#    the rest to the digits metrics.jsonl prints), through EventAccumulator
#    (what the TensorBoard UI reads) and EventFileLoader;
#  - the TFRecord framing and masked CRC32Cs, checked here by an independent parser;
#  - files cut at random bytes read up to their last whole record, without error;
#  - read while a run is going, and after kill -9 of it: whole records only, one per
#    step that metrics.jsonl has (the last step at most missing);
#  - a directory that cannot be created: one line, exit 1.
# Skipped (77), saying why, when the environment could not be made (no PyPI).
source "$(dirname "$0")/lib.sh"
PY=${LOOM_HF_VENV:-/opt/loom-test/venv}/bin/python
"$PY" -c "import tensorboard" 2>/dev/null ||
  { echo "no tensorboard in ${LOOM_HF_VENV:-/opt/loom-test/venv} (scripts/setup.sh could not reach PyPI?): skipped"; exit 77; }
D=data/tinyshakespeare_train.bin
V=data/tinyshakespeare_val.bin
M="--model tiny --batch 2 --seq-len 32 --threads 1"

"$LOOM" train $M --data $D --val-data $V --eval-every 2 --steps 7 --out "$TMP/run" --tensorboard "$TMP/tb" --quiet \
  >/dev/null 2>"$TMP/err"
rc=$?; check "train --tensorboard runs ($(head -c 200 "$TMP/err"))" test $rc -eq 0
check "one event file" test "$(ls "$TMP/tb" | grep -c tfevents)" -eq 1

cat >"$TMP/tb.py" <<'PY'
import glob, json, random, struct, sys
import numpy as np
from tensorboard.backend.event_processing import event_accumulator, event_file_loader

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def masked(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

def records(buf):
    """Whole records of a TFRecord byte string, checked; the end offset of each."""
    ends, at = [], 0
    while at + 12 <= len(buf):
        n, = struct.unpack_from("<Q", buf, at)
        hcrc, = struct.unpack_from("<I", buf, at + 8)
        assert hcrc == masked(crc32c(buf[at:at + 8])), "length CRC at %d" % at
        if at + 12 + n + 4 > len(buf):
            break
        dcrc, = struct.unpack_from("<I", buf, at + 12 + n)
        assert dcrc == masked(crc32c(buf[at + 12:at + 12 + n])), "data CRC at %d" % at
        at += 12 + n + 4
        ends.append(at)
    return ends

mode, path = sys.argv[1], sys.argv[2]
fails = []
if mode == "values":
    metrics = [json.loads(l) for l in open(sys.argv[3])]
    acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    # 0: a float, exact; -1: a double, to one float ulp (metrics.jsonl prints 9 digits)
    want = {"train/loss": ("loss", 0), "train/lr": ("lr", 0), "val/loss": ("val_loss", -1),
            "train/grad_norm": ("grad_norm", -1), "train/step_ms": ("ms", 5e-4),
            "train/tokens_per_s": ("tokens_per_s", 0.05), "train/mfu": ("mfu", 5e-5)}
    for tag, (key, tol) in want.items():
        if tag not in tags:
            fails.append("no tag " + tag)
            continue
        got = {e.step: e.value for e in acc.Scalars(tag)}
        exp = {m["step"]: m[key] for m in metrics if key in m}
        if sorted(got) != sorted(exp):
            fails.append("%s: steps %s, metrics.jsonl has %s" % (tag, sorted(got), sorted(exp)))
        for s, v in exp.items():
            g, f = got.get(s), np.float32(v)
            if g is None:
                continue
            ok = (np.float32(g) == f) if tol == 0 else \
                 (abs(np.float32(g) - f) <= abs(np.spacing(f))) if tol < 0 else abs(g - v) <= tol + 1e-6 * abs(v)
            if not ok:
                fails.append("%s step %d: %r vs metrics.jsonl %r" % (tag, s, g, v))
    if "memory/host_peak_mib" not in tags:
        fails.append("no memory/host_peak_mib")
    files = glob.glob(path + "/*tfevents*")
    buf = open(files[0], "rb").read()
    ends = records(buf)
    if not ends or ends[-1] != len(buf):
        fails.append("the file is not whole records: %s of %d bytes" % (ends[-1:] , len(buf)))
    n_events = len(list(event_file_loader.EventFileLoader(files[0]).Load()))
    if n_events != len(ends) or n_events != len(metrics) + 1:
        fails.append("%d events, %d records, %d metric lines + file version" % (n_events, len(ends), len(metrics)))
    # cut at random bytes (and at every record boundary +- 1): whole records only, no error
    random.seed(5)
    cuts = sorted(set(random.sample(range(1, len(buf)), 40) + [e + d for e in ends for d in (-1, 0, 1) if 0 < e + d < len(buf)]))
    for cut in cuts:
        open(path + "/cut.bin", "wb").write(buf[:cut])
        try:
            n = len(list(event_file_loader.EventFileLoader(path + "/cut.bin").Load()))
        except Exception as ex:
            fails.append("cut at %d: %r" % (cut, ex))
            continue
        whole = sum(1 for e in ends if e <= cut)
        if n != whole:
            fails.append("cut at %d: %d events read, %d whole records" % (cut, n, whole))
    print("checked %d scalars' steps, %d cuts" % (len(want), len(cuts)))
elif mode == "live":
    buf = open(path, "rb").read()  # one snapshot for both readers: the run may still be appending
    open(path + ".snap", "wb").write(buf)
    ends = records(buf)
    n = len(list(event_file_loader.EventFileLoader(path + ".snap").Load()))
    if n != len(ends) or n < 2:
        fails.append("%d events read, %d whole records" % (n, len(ends)))
    steps = [e.step for e in event_file_loader.LegacyEventFileLoader(path + ".snap").Load()][1:]
    if len(sys.argv) > 3:
        metrics = [json.loads(l)["step"] for l in open(sys.argv[3]) if l.endswith("\n")]
        if steps != metrics[:len(steps)] or len(metrics) - len(steps) > 1:
            fails.append("events of steps %s, metrics.jsonl %s" % (steps[-3:], metrics[-3:]))
    print("%d events" % n)
for f in fails[:20]:
    print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
"$PY" "$TMP/tb.py" values "$TMP/tb" "$TMP/run/metrics.jsonl" >"$TMP/out" 2>&1
rc=$?; check "TensorBoard reads every scalar as metrics.jsonl has it; framing and CRCs; cut files ($(grep -m3 FAIL "$TMP/out"; tail -1 "$TMP/out"))" \
  test $rc -eq 0

# read while a run writes, then after kill -9
"$LOOM" train $M --data $D --steps 100000 --out "$TMP/live" --tensorboard "$TMP/tbl" --quiet >/dev/null 2>&1 &
pid=$!
for i in $(seq 100); do
  [ "$({ wc -l <"$TMP/live/metrics.jsonl"; } 2>/dev/null || echo 0)" -ge 5 ] && break
  sleep 0.2
done
f=$(ls "$TMP"/tbl/*tfevents* 2>/dev/null | head -1)
"$PY" "$TMP/tb.py" live "$f" >"$TMP/out" 2>&1
rc=$?; check "an event file read while training runs: whole records ($(tail -1 "$TMP/out"))" test $rc -eq 0
kill -9 $pid
wait $pid 2>/dev/null
"$PY" "$TMP/tb.py" live "$f" "$TMP/live/metrics.jsonl" >"$TMP/out" 2>&1
rc=$?; check "after kill -9: whole records, one per step of metrics.jsonl ($(grep -m2 FAIL "$TMP/out"; tail -1 "$TMP/out"))" test $rc -eq 0

touch "$TMP/afile"
expect_error "--tensorboard under a file" "--tensorboard" \
  "$LOOM" train $M --data $D --steps 1 --out "$TMP/x" --tensorboard "$TMP/afile/tb"
finish tensorboard
