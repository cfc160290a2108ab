#!/usr/bin/env bash
# make install: `cmake --install` into a fresh prefix gives the binary, libloom.a and
# libloom.so, the public headers, loom.pc, the tokenizer files and the man pages; a C
# program built with `pkg-config --cflags --libs loom` (and statically with --static)
# trains one step through the public API; the installed binary finds its tokenizer away
# from the source tree; every flag `loom CMD --help` lists is in `man loom-CMD`.
source "$(dirname "$0")/lib.sh"
BUILD=$(cd "$(dirname "$LOOM")" && pwd)
P="$TMP/prefix"
cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1
rc=$?; check "cmake --install ($(tail -c 300 "$TMP/install.log"))" test $rc -eq 0
L=$(dirname "$(find "$P" -name libloom.a | head -1)")
L=${L#"$P/"}
for f in bin/loom $L/libloom.a $L/libloom.so include/loom/model.h include/loom/core.h $L/pkgconfig/loom.pc \
         share/loom/data/gpt2/r50k_base.tiktoken share/man/man1/loom.1 share/man/man1/loom-train.1; do
  check "installed $f" test -e "$P/$f"
done
export PKG_CONFIG_PATH="$P/$L/pkgconfig"
check "pkg-config knows loom $(pkg-config --modversion loom 2>&1)" pkg-config --exists loom
SRC="$(dirname "$0")/../install/train_one_step.c"
# a sanitizer build's library needs the program built with the sanitizers too
SAN=$(nm -D "$P/$L/libloom.so" 2>/dev/null | grep -q __asan_init && echo "-fsanitize=address,undefined")
cc -std=c11 $SAN -o "$TMP/one" "$SRC" $(pkg-config --cflags --libs loom) -Wl,-rpath,"$P/$L" 2>"$TMP/cc.log"
rc=$?; check "a program builds against the shared library ($(head -c 300 "$TMP/cc.log"))" test $rc -eq 0
"$TMP/one" >"$TMP/one.log" 2>&1
rc=$?; check "... and trains one step: $(cat "$TMP/one.log")" test $rc -eq 0
ldd "$TMP/one" | grep -q "$P/$L/libloom.so"
check "... linked to the installed libloom.so" test $? -eq 0
cc -std=c11 $SAN -o "$TMP/one_static" "$SRC" -I"$P/include" "$P/$L/libloom.a" $(pkg-config --static --libs-only-other --libs-only-l loom | sed 's/-lloom//') 2>"$TMP/cc.log"
rc=$?; check "statically, with pkg-config --static ($(head -c 300 "$TMP/cc.log"))" test $rc -eq 0
"$TMP/one_static" >"$TMP/one.log" 2>&1
rc=$?; check "... trains one step: $(cat "$TMP/one.log")" test $rc -eq 0
(cd "$TMP" && "$P/bin/loom" sample --model tiny --max-tokens 3 --prompt hi >"$TMP/s.log" 2>&1)
rc=$?; check "the installed binary finds its tokenizer outside the source tree ($(tail -c 200 "$TMP/s.log"))" test $rc -eq 0
for c in "" prep train eval sample export info trace report; do
  page=loom${c:+-$c}
  man -l "$P/share/man/man1/$page.1" 2>/dev/null | col -b >"$TMP/man.txt"
  "$P/bin/loom" $c --help 2>&1 | grep -o -- '--[a-z][a-z0-9-]*' | sort -u >"$TMP/flags"
  missing=$(while read -r f; do grep -qF -- "$f" "$TMP/man.txt" || printf '%s ' "$f"; done <"$TMP/flags")
  check "man $page lists all $(wc -l <"$TMP/flags") flags of loom $c --help${missing:+ (missing: $missing)}" \
    test -z "$missing" -a "$(wc -l <"$TMP/flags")" -gt 0 -o -z "$c" -a -z "$missing"
done
# bash completion: commands, and each command's flags
C="$P/share/bash-completion/completions/loom"
check "installed bash completion" test -f "$C"
complete_words() { # words... -> the completions of the last one
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _loom; printf "%s\n" "${COMPREPLY[@]}"' _ "$C" "$@"
}
check "completes 'loom ex' to export" test "$(complete_words loom ex)" = export
check "completes 'loom train --tensor' to --tensorboard" test "$(complete_words loom train --tensor)" = --tensorboard
got=$(complete_words loom sample -- | sort | tr '\n' ' ')
want=$("$P/bin/loom" sample --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u | tr '\n' ' ')
check "completes every flag of loom sample --help" test "$got" = "$want"
finish install
