#!/usr/bin/env bash
# dqn.py on other classic-control envs with flags only (docs/dqn.md); CPU, one run at a time. Each summary line
# also goes to benchmarks/results/dqn_classic_control.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-dqn-classic}
results=benchmarks/results/dqn_classic_control.txt
echo "# bash benchmarks/dqn_classic_control.sh, $(date +%F), torch on one CPU thread" > "$results"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for seed in 1 2 3; do  # learned: about -90 with 100k steps
  python dqn.py --device cpu --seed "$seed" --out "$out/acrobot-s$seed" --env-id Acrobot-v1 --total-steps 100000 \
    | tail -1 | sed "s/^/acrobot s$seed /" | tee -a "$results"
done
# MountainCar-v0: rl-baselines3-zoo's DQN recipe (one env, 256x256, 10k memory, 8 gradient steps every 16 env steps).
# The bursts matter: the same recipe with one gradient step every 2 env steps never reached the flag.
mc="--env-id MountainCar-v0 --device cpu --num-envs 1 --total-steps 120000 --hidden 256 --buffer-size 10000 --lr 4e-3
    --gamma 0.98 --target-every 600 --eps-end 0.07 --eps-fraction 0.2 --train-every 16 --gradient-steps 8"
for seed in 1 2 3 4 5; do
  python dqn.py $mc --seed "$seed" --out "$out/mountaincar-s$seed" | tail -1 | sed "s/^/mountaincar s$seed /" \
    | tee -a "$results"
done
python dqn.py $mc --seed 1 --out "$out/mountaincar-every2" --train-every 2 --gradient-steps 1 | tail -1 \
  | sed "s/^/mountaincar-every2 s1 /" | tee -a "$results"  # no bursts
