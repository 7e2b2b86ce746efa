#!/usr/bin/env bash
# dqn.py on other classic-control envs with flags only (README, "Other environments"); CPU, one run at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-dqn-classic}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for seed in 1 2 3; do  # learned: about -90 with 100k steps
  python dqn.py --device cpu --seed "$seed" --out "$out/acrobot-s$seed" --env-id Acrobot-v1 --total-steps 100000 | tail -1
done
# MountainCar-v0: not learned yet (returns stay at -200). The three attempts of the README, seed 1:
mc="--env-id MountainCar-v0 --device cpu --seed 1 --buffer-size 10000 --lr 4e-3 --gamma 0.98 --target-every 600 --eps-end 0.07 --hidden 128"
python dqn.py $mc --out "$out/mountaincar-a" --total-steps 120000 --train-every 2 --eps-fraction 0.2 | tail -1
python dqn.py $mc --out "$out/mountaincar-b" --total-steps 120000 --train-every 2 --eps-fraction 0.2 --num-envs 1 | tail -1
python dqn.py $mc --out "$out/mountaincar-c" --total-steps 200000 --train-every 2 --eps-fraction 0.3 --gamma 0.99 | tail -1
