#!/usr/bin/env bash
# scst.py's default model and data (all ~110k training words, 256 wide, 2 layers) on the CPU with a cut budget:
# 10 XE epochs instead of 20 (the cosine of the learning rate runs over those 10) and 300 SCST steps instead of
# 2,000 (docs/scst.md). Seed 1, one thread. About 75 minutes; xe_test_per and xe_test_wer are the XE model's.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-scst-cpu-default-model}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python scst.py --device cpu --xe-epochs 10 --scst-steps 300 --eval-every 100 --log-every 100 --out "$out/s1" | tail -1
