#!/usr/bin/env bash
# scst.py's --bf16 and --compile on the CPU against plain fp32 (docs/scst.md): 3,000 training words, 1 XE epoch,
# 30 SCST steps, default sizes, small dev and test splits (the speeds are of training); the three settings in turns,
# two rounds, one CPU thread, seed 1. The summaries (tokens_per_s of XE, words_per_s of SCST, wall_s) and the CPU
# go to benchmarks/results/scst_cpu_precision.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-scst-cpu-precision}
results=benchmarks/results/scst_cpu_precision.txt
rm -rf "$out" && mkdir -p "$out"  # a fresh start: a killed earlier run would be resumed
echo "# bash benchmarks/scst_cpu_precision.sh, $(date +%F), one thread of a $(nproc)-core $(lscpu | sed -n \
  's/^Model name: *//p'), torch $(python -c 'import torch; print(torch.__version__)')" > "$results"
flags="--device cpu --max-train 3000 --xe-epochs 1 --scst-steps 30 --eval-every 30 --test-words 500 --dev-words 200
  --seed 1"
for round in 1 2; do
  for setting in --no-bf16 --bf16 --compile; do
    python scst.py $flags $setting --out "$out/r$round$setting" | tail -1 | sed "s/^/round $round $setting /" \
      | tee -a "$results"
  done
done
