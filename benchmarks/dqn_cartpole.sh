#!/usr/bin/env bash
# dqn.py on CartPole-v1 with its defaults, seeds 1-5, one run at a time, on the CPU (docs/dqn.md).
# Each line: whole-run wall time from launch, when the mean of the last 10 training episodes first reached 475,
# and the script's summary (final greedy evaluation over 20 episodes). The lines and each run's curve (mean of the
# last 10 training returns against seconds from launch) go to benchmarks/results/dqn_cartpole/ for plot.py.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-dqn-cartpole}
results=benchmarks/results/dqn_cartpole
mkdir -p "$out" "$results"
rm -f "$results/ours.jsonl"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for seed in 1 2 3 4 5; do
  python benchmarks/timed_run.py --metrics "$out/s$seed/metrics.jsonl" --curve "$results/ours-s$seed.csv" -- \
    python dqn.py --device cpu --seed "$seed" --out "$out/s$seed" | tee -a "$results/ours.jsonl"
done
