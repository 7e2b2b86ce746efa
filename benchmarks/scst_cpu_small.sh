#!/usr/bin/env bash
# scst.py, the small CPU configuration (docs/scst.md): 30k training words, a 128-wide model, 6 epochs of
# cross-entropy, then 300 SCST steps from that cross-entropy checkpoint with each baseline (4 samples a word), and
# with the mean baseline over 16 samples a word. Seed 1, on the CPU, one run at a time. Each line is the script's
# summary (dev 3,000 and test 12,000 words, all references). The summaries and each run's metrics.jsonl (dev PER
# over the SCST steps, for benchmarks/plot.py) go to benchmarks/results/scst_cpu_small/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-scst-cpu-small}
results=benchmarks/results/scst_cpu_small
mkdir -p "$out" "$results"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
small="--device cpu --max-train 30000 --hidden 128 --batch-size 128 --log-every 100"
python scst.py $small --xe-epochs 6 --scst-steps 0 --out "$out/xe" | tail -1 | sed "s/^/xe /" \
  | tee "$results/summaries.txt"
cp "$out/xe/metrics.jsonl" "$results/xe.jsonl"
for run in "greedy 4" "mean 4" "mean 16"; do
  set -- $run
  python scst.py $small --load "$out/xe/model_xe.pt" --scst-steps 300 --eval-every 50 --baseline $1 --num-samples $2 \
    --out "$out/$1-k$2" | tail -1 | sed "s/^/$1 K=$2 /" | tee -a "$results/summaries.txt"
  cp "$out/$1-k$2/metrics.jsonl" "$results/$1-k$2.jsonl"
done
