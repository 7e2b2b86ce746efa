#!/usr/bin/env bash
# dqn.py on CartPole-v1 with its defaults, seeds 1-5, one run at a time, on the CPU (docs/dqn.md).
# Each line: whole-run wall time from launch, when the mean of the last 10 training episodes first reached 475,
# and the script's summary (final greedy evaluation over 20 episodes).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-dqn-cartpole}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for seed in 1 2 3 4 5; do
  python benchmarks/timed_run.py --metrics "$out/s$seed/metrics.jsonl" -- \
    python dqn.py --device cpu --seed "$seed" --out "$out/s$seed" | tee -a "$out/results.jsonl"
done
