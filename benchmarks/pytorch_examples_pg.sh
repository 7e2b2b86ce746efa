#!/usr/bin/env bash
# pytorch/examples' reinforcement_learning/reinforce.py and actor_critic.py side by side with ours
# (docs/reinforce.md, docs/actor_critic.md). They run unmodified on gymnasium 1.x, so our own environment serves.
# Nothing of pytorch/examples is committed here: fetch it yourself, then
#   EXAMPLES=/path/to/pytorch/examples  (commit 77f55b91 was measured)
#   EXAMPLES=... bash benchmarks/pytorch_examples_pg.sh
# Each run stops at their own criterion (running reward EMA(0.05) > 475, "Solved!"), so its wall time from launch
# is the time to solve. Torch on one thread, as ours on the CPU.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$here/runs/bench-pytorch-examples-pg}
results=$here/benchmarks/results/pg_cartpole
mkdir -p "$out" "$results"
rm -f "$results/pytorch_examples.txt"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for script in reinforce actor_critic; do
  for seed in 1 2 3 4 5; do
    PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 python "$here/benchmarks/timed_run.py" --criterion ema \
      --log "$out/$script-s$seed.log" --curve "$results/pytorch_examples-$script-s$seed.csv" -- \
      python "$EXAMPLES/reinforcement_learning/$script.py" --seed "$seed" \
      | sed "s/^/$script s$seed /" | tee -a "$results/pytorch_examples.txt"
  done
done
