#!/usr/bin/env bash
# dqn.py on other classic-control envs with flags only (README, "Other environments"); CPU, one run at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-dqn-classic}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for seed in 1 2 3; do
  python dqn.py --device cpu --seed "$seed" --out "$out/acrobot-s$seed" --env-id Acrobot-v1 --total-steps 100000 | tail -1
done
for seed in 1 2 3; do
  python dqn.py --device cpu --seed "$seed" --out "$out/mountaincar-s$seed" --env-id MountainCar-v0 \
    --total-steps 120000 --buffer-size 10000 --lr 4e-3 --gamma 0.98 --target-every 600 --train-every 2 \
    --eps-fraction 0.2 --eps-end 0.07 --hidden 128 | tail -1
done
