#!/usr/bin/env bash
# Pendulum-v1 (continuous actions; uniformly random actions score about -1200): actor_critic.py to a greedy return
# of about -200 or better, reinforce.py's clear improvement; seeds 1-3, one run at a time, on the CPU
# (docs/reinforce.md and docs/actor_critic.md). Into benchmarks/results/pg_pendulum/: summaries.txt, each run's
# summary (20 greedy episodes), and each run's validations (greedy return against env steps) for plot.py.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-pg-pendulum}
mkdir -p "$out" benchmarks/results/pg_pendulum
summaries=benchmarks/results/pg_pendulum/summaries.txt
echo "# bash benchmarks/pg_pendulum.sh, $(date +%F), torch on one CPU thread" > "$summaries"
validations() {  # metrics.jsonl -> CSV of step, val_return
  python -c 'import json, sys
print("step,val_return")
for r in map(json.loads, open(sys.argv[1])):
    if "val_return" in r: print("%d,%.1f" % (r["step"], r["val_return"]))' "$1" > "$2"
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python benchmarks/random_policy.py Pendulum-v1 100 > benchmarks/results/pg_pendulum/random_policy.json  # the floor
for seed in 1 2 3; do
  python actor_critic.py --device cpu --env-id Pendulum-v1 --total-steps 3000000 --num-envs 64 --lr 2e-3 \
    --gamma 0.9 --gae-lambda 0.9 --reward-scale 0.1 --log-std-init -1 --eval-every 100000 --log-every 500000 \
    --seed "$seed" \
    --out "$out/actor_critic-s$seed" | tail -1 | sed "s/^/actor_critic s$seed /" | tee -a "$summaries"
  validations "$out/actor_critic-s$seed/metrics.jsonl" "benchmarks/results/pg_pendulum/actor_critic-s$seed.csv"
done
for seed in 1 2 3; do
  python reinforce.py --device cpu --env-id Pendulum-v1 --total-steps 1000000 --num-envs 32 --lr 3e-3 \
    --gamma 0.95 --eval-every 50000 --log-every 200000 --seed "$seed" \
    --out "$out/reinforce-s$seed" | tail -1 | sed "s/^/reinforce s$seed /" | tee -a "$summaries"
  validations "$out/reinforce-s$seed/metrics.jsonl" "benchmarks/results/pg_pendulum/reinforce-s$seed.csv"
done
