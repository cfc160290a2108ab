#!/usr/bin/env bash
# Single-thread (and 2-thread) MB/s of loom's GPT-2 encoder beside tiktoken, in one run:
# on data/tinyshakespeare.txt and on a mixed-Unicode text (the corpus 4 times over with
# Greek, Cyrillic, CJK, Hangul, Arabic, emoji, accents; written by bench_tokenizer).
# tiktoken comes from PyPI in the venv $LOOM_BENCH_VENV (default /opt/loom-bench/venv) and
# is built from the LOCAL data/gpt2/r50k_base.tiktoken (it downloads nothing). The rounds
# alternate loom and tiktoken (ABAB...); each line is the median of TRIALS trials, and the
# summary averages the rounds' medians. Both must produce the same token counts.
# usage: bench/bench_tokenizer.sh [BUILD_DIR=build] [--setup: pip install tiktoken first]
# env: TRIALS (7), MIN_TIME (0.3 s per trial), ROUNDS (2), THREADS (2: also 2-thread rows)
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
setup=0
for a in "$@"; do
  case "$a" in
    --setup) setup=1 ;;
    -*) echo "usage: $0 [BUILD_DIR] [--setup]" >&2; exit 2 ;;
    *) build=$a ;;
  esac
done
venv=${LOOM_BENCH_VENV:-/opt/loom-bench/venv}
trials=${TRIALS:-7} min_time=${MIN_TIME:-0.3} rounds=${ROUNDS:-2} threads=${THREADS:-2}
if [ $setup = 1 ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q tiktoken
fi
if ! "$venv/bin/python" -c 'import tiktoken' 2>/dev/null; then
  echo "bench_tokenizer.sh: tiktoken is not installed in $venv (run with --setup)" >&2
  exit 1
fi
cmake -S . -B "$build" >/dev/null && cmake --build "$build" -j2 --target bench_tokenizer >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/bench/bench_tokenizer" --write-mixed "$tmp/mixed.txt"

cat > "$tmp/tiktoken_bench.py" <<'PY'
import os, statistics, sys, time
import tiktoken, tiktoken.load
texts, trials, min_time, threads = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
t0 = time.perf_counter()
ranks = tiktoken.load.load_tiktoken_bpe("data/gpt2/r50k_base.tiktoken")
enc = tiktoken.Encoding(name="gpt2_local", pat_str=PAT, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
print("tiktoken_bench: tiktoken %s built from data/gpt2/r50k_base.tiktoken in %.0f ms" % (tiktoken.__version__, (time.perf_counter() - t0) * 1e3))

def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")

def chunks(s, size=1 << 16):  # cut at '\n' after printable ASCII, as loom's parallel encode
    out, start = [], 0
    while start < len(s):
        i = start + size
        while i < len(s) and not (s[i] == "\n" and "!" <= s[i - 1] <= "~"):
            i += 1
        out.append(s[start:i]); start = i
    return out

for th in range(1, threads + 1):
    for path in texts:
        name = "tinyshakespeare" if "shakespeare" in path else "mixed-unicode"
        with open(path, encoding="utf-8") as f:
            s = f.read()
        nbytes = len(s.encode("utf-8"))
        parts = chunks(s) if th > 1 else None
        run = (lambda: enc.encode_ordinary(s)) if th == 1 else \
              (lambda: [t for ids in enc.encode_ordinary_batch(parts, num_threads=th) for t in ids])
        ntok = len(run())
        mbs = []
        b0, c0, w0 = busy(), time.process_time(), time.perf_counter()
        for _ in range(trials):
            reps, t0 = 0, time.perf_counter()
            while True:
                run(); reps += 1
                el = time.perf_counter() - t0
                if el >= min_time: break
            mbs.append(nbytes * reps / el / 1e6)
        wall = time.perf_counter() - w0
        other = max(0.0, 100 * (busy() - b0 - (time.process_time() - c0)) / (wall * os.cpu_count()))
        mbs.sort()
        print("tiktoken  %-16s %d thread%s %8.2f MB/s  (median of %d, min %.2f, max %.2f)  %d bytes -> %d tokens  other %.0f%%"
              % (name, th, "s" if th > 1 else " ", statistics.median(mbs), trials, mbs[0], mbs[-1], nbytes, ntok, other),
              flush=True)
PY

out="$tmp/out.txt"
echo "bench_tokenizer.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $rounds rounds of $trials trials (>= ${min_time}s each)"
for r in $(seq 1 "$rounds"); do
  "$build/bench/bench_tokenizer" --trials "$trials" --min-time "$min_time" --threads "$threads" | tee -a "$out"
  "$venv/bin/python" "$tmp/tiktoken_bench.py" "data/tinyshakespeare.txt,$tmp/mixed.txt" "$trials" "$min_time" "$threads" \
    | tee -a "$out"
done
echo
echo "summary (MB/s, mean of the rounds' medians; 'other' = CPU taken by other processes, >5% = disturbed):"
printf "%-16s %-9s %10s %10s %8s  %s\n" text threads loom tiktoken ratio "tokens equal"
awk '$1 == "loom" || $1 == "tiktoken" {
       k = $2 " " $3; v[$1, k] += $5; n[$1, k]++; tok[$1, k] = $(NF-3); oth[$1, k] = $NF; keys[k] = 1 }
     END {
       for (k in keys) {
         split(k, p, " "); l = v["loom", k] / n["loom", k]; t = n["tiktoken", k] ? v["tiktoken", k] / n["tiktoken", k] : 0
         printf "%-16s %-9s %10.2f %10.2f %7.2fx  %s (other %s / %s)\n", p[1], p[2], l, t, (t > 0 ? l / t : 0),
                tok["loom", k] == tok["tiktoken", k] ? "yes" : "NO", oth["loom", k], oth["tiktoken", k]
       } }' "$out" | sort
if awk '$1 == "loom" || $1 == "tiktoken" { t[$1, $2 $3] = $(NF-3) } END { for (k in t) { split(k, p, SUBSEP); if (t["loom", p[2]] != t["tiktoken", p[2]]) bad = 1 } exit bad }' "$out"; then
  :
else
  echo "bench_tokenizer.sh: loom and tiktoken token counts differ" >&2
  exit 1
fi
