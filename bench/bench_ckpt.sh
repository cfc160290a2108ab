#!/usr/bin/env bash
# Checkpoint save time and bandwidth beside the disk's own sequential write bandwidth
# (dd with fsync copying the checkpoint itself from the page cache: same directory, size
# and bytes), measured in the same run.
# Usage: bench/bench_ckpt.sh [BUILD_DIR=build] [PRESET=small] [DIR=bench/out/ckpt]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
preset=${2:-small}
dir=${3:-bench/out/ckpt}
rm -rf "$dir" && mkdir -p "$dir"
echo "bench_ckpt.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), preset $preset, directory $dir ($(df -h "$dir" | awk 'NR==2 {print $1}'))"
"$build/loom" train --model "$preset" --data data/tinyshakespeare_train.bin --batch 1 --seq-len 64 --steps 4 \
  --ckpt-dir "$dir/ck" --ckpt-every 1 --keep 1 --out "$dir/run" | grep '^checkpoint' | tee "$dir/saves.txt"
bytes=$(stat -c %s "$dir/ck/step_00000004.safetensors")
mb=$((bytes / 1048576))
for i in 1 2 3; do
  dd if="$dir/ck/step_00000004.safetensors" of="$dir/dd.bin" bs=1M count=$mb conv=fsync 2>&1 | tail -n 1
  rm -f "$dir/dd.bin"
done | tee "$dir/dd.txt"
loom_med=$(sed -E 's/.* \(([0-9.]+) MB\/s\)/\1/' "$dir/saves.txt" | sort -g | sed -n '2,3p' | head -n 1)
dd_med=$(sed -E 's/.*, ([0-9.]+) ([MG])B\/s/\1 \2/' "$dir/dd.txt" | awk '{print ($2 == "G") ? $1 * 1000 : $1}' | sort -g | sed -n 2p)
echo "checkpoint of $((bytes / 1000000)) MB: loom save median $loom_med MB/s (write + fsync + rename + latest + prune), dd with fsync median $dd_med MB/s"
rm -rf "$dir"
