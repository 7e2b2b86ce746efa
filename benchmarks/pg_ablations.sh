#!/usr/bin/env bash
# Two choices of actor_critic.py's documented settings, each against its alternative (docs/actor_critic.md):
# advantages not normalized by default (CartPole-v1, seeds 1-5, default flags with --normalize-adv), and 64
# environments on Pendulum-v1 (the same flags as benchmarks/pg_pendulum.sh with 16, seeds 1-3). One CPU thread.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-pg-ablations}
results=benchmarks/results/pg_ablations.txt
mkdir -p "$out"
echo "# bash benchmarks/pg_ablations.sh, $(date +%F), one thread of a $(nproc)-core $(lscpu | sed -n \
  's/^Model name: *//p')" > "$results"
progress() {  # the mean training return of each progress line of a run, in order
  python -c 'import json, sys
print(sys.argv[2], "training returns", [r["return"] for r in map(json.loads, open(sys.argv[1])) if "sps" in r])' "$@"
}
for seed in 1 2 3 4 5; do
  python actor_critic.py --device cpu --normalize-adv --seed "$seed" --out "$out/cartpole-normalized-s$seed" \
    | tail -1 | sed "s/^/cartpole --normalize-adv s$seed /" | tee -a "$results"
  progress "$out/cartpole-normalized-s$seed/metrics.jsonl" "cartpole --normalize-adv s$seed" | tee -a "$results"
done
for seed in 1 2 3; do
  python actor_critic.py --device cpu --env-id Pendulum-v1 --total-steps 3000000 --num-envs 16 --lr 2e-3 \
    --gamma 0.9 --gae-lambda 0.9 --reward-scale 0.1 --log-std-init -1 --eval-every 100000 --log-every 500000 \
    --seed "$seed" --out "$out/pendulum-16envs-s$seed" | tail -1 | sed "s/^/pendulum --num-envs 16 s$seed /" \
    | tee -a "$results"
done
