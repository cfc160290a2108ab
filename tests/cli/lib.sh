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

check() { # check "what" cond...
  local what=$1
  shift
  if "$@"; then ok; else bad "$what"; fi
}

finish() {
  echo "$1: $PASS passed, $FAIL failed"
  [ $FAIL -eq 0 ]
}
