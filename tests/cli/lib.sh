# Helpers for the end-to-end tests that drive the loom binary as a user does.
# Each test script: source this, call check/expect_error, end with `finish NAME`.
set -u
LOOM=${LOOM:?set LOOM to the loom binary}
TMP=$(mktemp -d /tmp/loom_cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
PASS=0
FAIL=0

not() { ! "$@"; }
ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }

# expect_error "what" "substring" cmd...: non-zero exit that is not a crash (signal),
# exactly one line on stderr, containing the substring.
expect_error() {
  local what=$1 want=$2
  shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$? lines
  lines=$(wc -l <"$TMP/err")
  if [ $rc -eq 0 ]; then bad "$what: exit 0 (expected an error)"; return; fi
  if [ $rc -ge 128 ]; then bad "$what: crashed with status $rc: $(head -c 300 "$TMP/err")"; return; fi
  if [ "$lines" -ne 1 ]; then bad "$what: $lines stderr lines (want 1): $(head -c 300 "$TMP/err")"; return; fi
  if ! grep -qF -- "$want" "$TMP/err"; then bad "$what: stderr lacks '$want': $(cat "$TMP/err")"; return; fi
  ok
}

# MPI tests: skip (77) without an MPI build or MPIRUN; RUN=(the launcher, oversubscribed,
# yielding when idle, shared memory)
mpi_setup() {
  MPIRUN=${MPIRUN:-mpirun}
  [ -x "$LOOM" ] || { echo "$LOOM not built: skipped"; exit 77; }
  "$LOOM" info | grep -q "^MPI: not in this build" && { echo "built without MPI: skipped"; exit 77; }
  command -v "$MPIRUN" >/dev/null || { echo "$MPIRUN not found: skipped"; exit 77; }
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  if "$MPIRUN" --version 2>&1 | grep -q "Open MPI"; then
    RUN=("$MPIRUN" --oversubscribe --mca mpi_yield_when_idle 1 --mca btl self,vader)
  else
    RUN=("$MPIRUN")
  fi
}

# fault_kill WHAT TRAIN_FLAGS...: 2 ranks train until the last is killed (-9) once metrics
# appear: the job must end non-zero within 20 s
fault_kill() {
  local what=$1 job victim t0 rc took
  shift
  timeout 60 "${RUN[@]}" -np 2 "$LOOM" train "$@" --steps 100000 --out "$TMP/kill" >/dev/null 2>"$TMP/kill.err" &
  job=$!
  for _ in $(seq 300); do [ -s "$TMP/kill/metrics.jsonl" ] && break; sleep 0.1; done
  victim=$(pgrep -f "loom train .*--out $TMP/kill" | tail -n 1)
  t0=$(date +%s)
  kill -9 "$victim"
  wait $job
  rc=$?; took=$(($(date +%s) - t0))
  check "$what: non-zero exit (got $rc)" test $rc -ne 0 -a $rc -ne 124
  check "$what: job ended within 20 s ($took s)" test $took -le 20
}
# fault_stop WHAT TRAIN_FLAGS...: the same with the last rank stopped (SIGSTOP) and
# --comm-timeout 3: the job must end; the survivor's stderr is left in $TMP/stop.err
fault_stop() {
  local what=$1 job victim rc
  shift
  timeout 60 "${RUN[@]}" -np 2 "$LOOM" train "$@" --steps 100000 --comm-timeout 3 --out "$TMP/stop" >/dev/null \
    2>"$TMP/stop.err" &
  job=$!
  for _ in $(seq 300); do [ -s "$TMP/stop/metrics.jsonl" ] && break; sleep 0.1; done
  victim=$(pgrep -f "loom train .*--out $TMP/stop" | tail -n 1)
  kill -STOP "$victim"
  wait $job
  rc=$?
  kill -9 "$victim" 2>/dev/null
  check "$what: the job ended (exit $rc)" test $rc -ne 0 -a $rc -ne 124
}

check() { # check "what" cond...
  local what=$1
  shift
  if "$@"; then ok; else bad "$what"; fi
}

finish() {
  echo "$1: $PASS passed, $FAIL failed"
  [ $FAIL -eq 0 ]
}
