#!/usr/bin/env bash
# loom report, and the report.html that train writes at each checkpoint and at the end:
#  - the page is self-contained (no src/href/url() or http(s) references, no scripts);
#  - one plot per metric, one path per run that has the metric, as many points as
#    metrics.jsonl has lines with it, each point mapping back (through the plot's data
#    ranges) to the metric's value; ticks and axis labels present;
#  - rendered by headless Chromium (Debian's chromium): the DOM it builds holds the
#    plots, and its screenshot shows both runs' colours;
#  - run.json (layout, memory per buffer, checkpoints, profile) and its tables in the page;
#  - a missing directory and a malformed metrics line: one line each, exit 1.
source "$(dirname "$0")/lib.sh"
D=data/tinyshakespeare_train.bin
V=data/tinyshakespeare_val.bin
M="--model tiny --batch 2 --seq-len 32 --threads 1 --quiet"
"$LOOM" train $M --data $D --val-data $V --eval-every 2 --steps 6 --out "$TMP/a" --ckpt-dir "$TMP/ck" \
  --ckpt-every 3 --profile >/dev/null 2>"$TMP/err"
rc=$?; check "train a ($(head -c 200 "$TMP/err"))" test $rc -eq 0
check "train wrote a/report.html" test -s "$TMP/a/report.html"
# run.json: layout, memory per buffer, the checkpoints written, the profile; in the page
/usr/bin/python3 - "$TMP/a" >"$TMP/out" 2>&1 <<'PY'
import json, os, re, sys
d = sys.argv[1]
info = json.load(open(d + "/run.json"))
page = open(d + "/report.html").read()
fails = []
steps = [c["step"] for c in info["checkpoints"]]
if steps != [3, 6] or not all(os.path.exists(c["file"]) for c in info["checkpoints"]):
    fails.append("checkpoints %s" % info["checkpoints"])
if info["layout"]["ranks"] != 1 or info["layout"]["batch"] != 2 or info["layout"]["seq_len"] != 32:
    fails.append("layout %s" % info["layout"])
mem = info["memory_mib_per_rank"]
if not (mem["parameters"] > 0 and mem["adamw_m_v"] == 2 * mem["parameters"]):
    fails.append("memory %s" % mem)
if "matmul fwd" not in info.get("profile_ms_per_step", {}):
    fails.append("no profile")
for cls, want in (("layout", "tokens_per_step"), ("memory_mib_per_rank", "adamw_m_v"),
                  ("profile_ms_per_step", "matmul fwd"), ("checkpoints", "step_00000006")):
    t = re.search(r'<table class="%s">(.*?)</table>' % cls, page, re.S)
    if not t or want not in t.group(1):
        fails.append("the page's %s table lacks %s" % (cls, want))
print("run.json: %d checkpoints, %d memory rows" % (len(steps), len(mem)))
for f in fails:
    print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
rc=$?; check "run.json and its tables in the page ($(grep -m3 FAIL "$TMP/out"; tail -1 "$TMP/out"))" test $rc -eq 0
"$LOOM" train $M --data $D --steps 4 --lr 1e-3 --out "$TMP/b" >/dev/null 2>&1
"$LOOM" report "$TMP/a" "$TMP/b" --out "$TMP/both.html" >/dev/null 2>"$TMP/err"
rc=$?; check "loom report of two runs ($(head -c 200 "$TMP/err"))" test $rc -eq 0

cat >"$TMP/check.py" <<'PY'
import json, re, sys
html_path, dom_path, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
fails = []
page = open(html_path).read()
if re.search(r"(src|href)\s*=|url\(|https?://|<script", page, re.I):
    fails.append("the page has an external reference or a script")
dom = open(dom_path).read() if dom_path != "-" else page
metrics = [[json.loads(l) for l in open(r + "/metrics.jsonl")] for r in runs]
svgs = dict(re.findall(r'<svg id="plot-([a-z_-]+)"(.*?)</svg>', dom, re.S))
for key in ("loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "mfu", "ms"):
    have = [i for i, m in enumerate(metrics) if any(key in l for l in m)]
    if key not in svgs:
        fails.append("no plot of " + key)
        continue
    body = svgs[key]
    x0, x1, y0, y1 = (float(re.search(r'data-%s="([^"]+)"' % a, body).group(1)) for a in ("x0", "x1", "y0", "y1"))
    paths = re.findall(r'<path class="series" data-run="(\d+)" data-points="(\d+)"[^>]* d="([^"]+)"', body)
    if sorted(int(p[0]) for p in paths) != have:
        fails.append("%s: paths of runs %s, runs with it %s" % (key, [p[0] for p in paths], have))
    if "axis-label" not in body or body.count('class="tick"') < 4:
        fails.append("%s: axis labels or ticks missing" % key)
    for run, npts, d in paths:
        rows = [l for l in metrics[int(run)] if key in l]
        pts = [tuple(map(float, p.split(","))) for p in re.findall(r"[ML]([-0-9.]+,[-0-9.]+)", d)]
        if int(npts) != len(rows) or len(pts) != len(rows):
            fails.append("%s run %s: %s points, metrics.jsonl has %d" % (key, run, len(pts), len(rows)))
            continue
        for (px, py), l in zip(pts, rows):  # pixels back to values: L 70, R 20, T 30, B 45 of 640 x 280
            step = x0 + (px - 70) / (640 - 70 - 20) * (x1 - x0)
            val = y0 + (280 - 45 - py) / (280 - 30 - 45) * (y1 - y0)
            if abs(step - l["step"]) > 0.01 * (x1 - x0) / 550 + 1e-9 or abs(val - l[key]) > 0.006 * (y1 - y0) / 205 + 1e-12:
                fails.append("%s run %s step %d: drawn at %.4g, %.4g; metrics.jsonl %.4g" % (key, run, l["step"], step, val, l[key]))
                break
if "plot-loss-time" not in dom:
    fails.append("no loss-over-time plot")
print("%d plots checked" % len(svgs))
for f in fails[:10]:
    print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
/usr/bin/python3 "$TMP/check.py" "$TMP/both.html" - "$TMP/a" "$TMP/b" >"$TMP/out" 2>&1
rc=$?; check "report: self-contained, every metric plotted as metrics.jsonl has it ($(grep -m3 FAIL "$TMP/out"; tail -1 "$TMP/out"))" test $rc -eq 0
/usr/bin/python3 "$TMP/check.py" "$TMP/a/report.html" - "$TMP/a" >"$TMP/out" 2>&1
rc=$?; check "train's own report.html ($(grep -m3 FAIL "$TMP/out"; tail -1 "$TMP/out"))" test $rc -eq 0

CHROMIUM=$(command -v chromium || command -v chromium-browser)
if [ -n "$CHROMIUM" ]; then
  C=("$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$TMP/chrome")
  timeout 120 "${C[@]}" --dump-dom "file://$TMP/both.html" >"$TMP/dom.html" 2>/dev/null
  /usr/bin/python3 "$TMP/check.py" "$TMP/both.html" "$TMP/dom.html" "$TMP/a" "$TMP/b" >"$TMP/out" 2>&1
  rc=$?; check "Chromium's DOM of the page holds the plots ($(grep -m3 FAIL "$TMP/out"; tail -1 "$TMP/out"))" test $rc -eq 0
  timeout 120 "${C[@]}" --window-size=900,2800 --screenshot="$TMP/shot.png" "file://$TMP/both.html" >/dev/null 2>&1
  /usr/bin/python3 - "$TMP/shot.png" >"$TMP/out" 2>&1 <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
at, idat, w = 8, b"", None
while at < len(data):
    n, kind = struct.unpack(">I4s", data[at:at + 8])
    body = data[at + 8:at + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        bpp = {2: 3, 6: 4}[ctype]
    elif kind == b"IDAT":
        idat += body
    at += 12 + n
raw, stride, prev, rows = zlib.decompress(idat), w * bpp, None, []
for y in range(h):  # PNG row filters
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x] if prev else 0
        c = prev[x - bpp] if prev and x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line)
    prev = line
def count(rgb):
    return sum(1 for line in rows for x in range(0, stride, bpp)
               if all(abs(line[x + i] - rgb[i]) < 40 for i in range(3)))
blue, red = count((31, 119, 180)), count((214, 39, 40))
print("%dx%d screenshot: %d pixels of run 0's colour, %d of run 1's" % (w, h, blue, red))
sys.exit(0 if blue > 500 and red > 300 else 1)
PY
  rc=$?; check "Chromium's screenshot shows both runs' lines ($(tail -1 "$TMP/out"))" test $rc -eq 0
else
  echo "note: chromium not installed: the rendering checks did not run"
  bad "chromium is missing (scripts/setup.sh installs it)"
fi

expect_error "report of a missing directory" "nope/metrics.jsonl: cannot read" "$LOOM" report "$TMP/nope"
mkdir -p "$TMP/m"
{ head -2 "$TMP/a/metrics.jsonl"; echo '{"loss": 1'; head -3 "$TMP/a/metrics.jsonl" | tail -1; } >"$TMP/m/metrics.jsonl"
expect_error "a malformed metrics line" "m/metrics.jsonl:3:" "$LOOM" report "$TMP/m"
finish report
