#!/usr/bin/env bash
# reinforce.py and actor_critic.py on CartPole-v1 with their defaults, seeds 1-5, one run at a time, on the CPU
# (docs/reinforce.md and docs/actor_critic.md). Each line: whole-run wall time from launch; when pytorch/examples'
# criterion (running reward r <- 0.05 * return + 0.95 * r from r = 10, over our logged training episodes in the
# order they finished) first exceeded 475; and the script's summary (final greedy evaluation over 20 episodes).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-pg-cartpole}
results=benchmarks/results/pg_cartpole
mkdir -p "$out" "$results"
rm -f "$results/ours.txt"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for script in reinforce actor_critic; do
  for seed in 1 2 3 4 5; do
    python benchmarks/timed_run.py --criterion ema --metrics "$out/$script-s$seed/metrics.jsonl" \
      --curve "$results/ours-$script-s$seed.csv" -- python $script.py --device cpu --seed "$seed" \
      --out "$out/$script-s$seed" | sed "s/^/$script s$seed /" | tee -a "$results/ours.txt"
  done
done
