#!/usr/bin/env bash
# Writes loom's man pages from its own --help text, so that the two cannot drift:
# loom.1 (from `loom --help`) and loom-CMD.1 for each command (from `loom CMD --help`).
# usage: scripts/man.sh LOOM_BINARY OUT_DIR VERSION
set -euo pipefail
loom=$1 out=$2 version=$3
mkdir -p "$out"
# roff-safe text in a no-fill block: backslashes escaped, control characters at the
# start of a line neutralised
esc() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"; }
main=$("$loom" --help)
cmds=$(printf '%s\n' "$main" | sed -n 's/^  \([a-z]\+\)  \+.*/\1/p')
see="loom(1)"
for c in $cmds; do see="$see, loom-$c(1)"; done
page() { # name summary help-text
  local name=$1 summary=$2 text=$3 upper
  upper=$(printf '%s' "$name" | tr a-z A-Z)
  {
    printf '.TH %s 1 "" "loom %s" "loom manual"\n' "$upper" "$version"
    printf '.SH NAME\n%s \\- %s\n' "$name" "$(printf '%s' "$summary" | esc)"
    printf '.SH DESCRIPTION\n.nf\n'
    printf '%s\n' "$text" | esc
    printf '.fi\n.SH SEE ALSO\n%s\n' "$see"
  } >"$out/$name.1"
}
page loom "$(printf '%s\n' "$main" | head -1 | sed 's/^loom [^:]*: //')" "$main"
for c in $cmds; do
  summary=$(printf '%s\n' "$main" | sed -n "s/^  $c  \+//p")
  page "loom-$c" "$summary" "$("$loom" "$c" --help)"
done
