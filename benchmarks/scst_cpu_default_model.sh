#!/usr/bin/env bash
# scst.py's default model and data (all ~110k training words, 256 wide, 2 layers) on the CPU with a cut budget:
# 10 XE epochs instead of 20 and 300 SCST steps instead of 2,000 (README, "scst.py"). Seed 1. About an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-scst-cpu-default-model}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python scst.py --device cpu --xe-epochs 10 --scst-steps 300 --eval-every 100 --log-every 100 --out "$out/s1" | tail -1
python scst.py --device cpu --load "$out/s1/model_xe.pt" --eval-only --out "$out/xe" | tail -1
