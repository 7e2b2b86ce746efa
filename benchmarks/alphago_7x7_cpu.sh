#!/usr/bin/env bash
# alphago_mcts.py, a first small 7x7 run on the CPU (README, "alphago_mcts.py"): 150 expert games of UCT with 100
# simulations a move, a 4-layer 32-wide policy (SL 20 epochs, RL 100 steps of 64 games) and value network (4,000
# self-play games), then 20 games against each opponent with 200 simulations a move (GNU Go level 10 when
# installed). Seed 1, one core (taskset), komi 9.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-alphago-7x7-cpu}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 taskset -c "${CORE:-0}" python alphago_mcts.py --board-size 7 --expert-games 150 --expert-sims 100 \
  --width 32 --layers 4 --sl-epochs 20 --log-every 5 --rl-iters 100 --value-games 4000 --sims 200 --games 20 \
  --device cpu --out "$out" | tail -1 | tee -a "$out/results.txt"
